"""``python -m claiim``: the ``claiim`` command."""

from claiim._cli.main import main

main()
