"""``python -m swinir ...``: the same as the ``swinir`` console script."""

import sys

from .cli import main

sys.exit(main())
