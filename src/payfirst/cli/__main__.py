"""`python -m payfirst.cli`: the command line."""

import sys

from payfirst.cli import main

sys.exit(main())
