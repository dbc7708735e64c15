"""``python -m swinir ...``: the same as the ``swinir`` console script."""

import sys

from .commands import main

sys.exit(main())
