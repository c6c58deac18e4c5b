"""`python -m fcngraph` = the `fcngraph` command."""

import sys

from .cli import main

sys.exit(main())
