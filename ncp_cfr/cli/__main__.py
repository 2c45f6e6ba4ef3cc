"""``python -m ncp_cfr.cli``: the same as the ``ncp-cfr`` command."""

from ncp_cfr.cli import entry

entry()
