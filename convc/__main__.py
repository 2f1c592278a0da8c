"""``python -m convc``: the command line."""

import sys

from convc.cli import main

sys.exit(main())
