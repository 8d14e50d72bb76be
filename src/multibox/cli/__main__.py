"""`python -m multibox.cli`: the same command line as `multibox`."""

import sys

from multibox.cli import main

sys.exit(main())
