"""`python -m multibox` runs the command line."""

import sys

from multibox.cli import main

sys.exit(main())
