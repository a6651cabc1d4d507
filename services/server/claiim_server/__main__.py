"""``python -m claiim_server``: the ``claiim`` command."""

from claiim_server.cli.main import run

run()
