"""`python -m fnnet.cli ...`: the `fnnet` command."""

import sys

from fnnet.cli import main

sys.exit(main())
