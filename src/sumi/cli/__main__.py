"""`python -m sumi.cli ...` = `sumi ...`."""

import sys

from . import main

sys.exit(main())
