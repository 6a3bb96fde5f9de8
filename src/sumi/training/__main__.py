"""`python -m sumi.training RECIPE.yaml [key.sub=value ...] [--resume] [--dry-run]`, the same as `sumi
train ...`; the form torchrun launches: `torchrun --nproc_per_node=N -m sumi.training RECIPE.yaml`."""

import sys

from .cli import main

sys.exit(main())
