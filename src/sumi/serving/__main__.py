"""`python -m sumi.serving [--model demo] [--port 8000] ...`: the same as `sumi serve`."""

import sys

from .cli import main

sys.exit(main())
