"""Bundled example jobs: real DDP training on data that ships with a package or is generated."""
