"""`python -m sumi.data data prepare|stats ...` / `python -m sumi.data tokenizer train ...`."""

import sys

from .cli import main

sys.exit(main())
