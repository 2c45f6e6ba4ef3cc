"""``python -m ncp_cfr``: the same as the ``ncp-cfr`` command."""

from ncp_cfr.cli import entry

entry()
