"""``python -m ncp_cfr``: the same as the ``ncp-cfr`` command."""

import sys

from ncp_cfr.cli import main

sys.exit(main())
