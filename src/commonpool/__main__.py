"""`python -m commonpool` runs the same CLI as the `commonpool` script."""

from commonpool.api.cli import main

main()
