"""Use cases over the registry. They take a session and never commit (the unit of work does)."""
