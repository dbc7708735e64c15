"""``python -m swinir.training ARGS`` is ``swinir train ARGS`` (the trainer is :mod:`swinir.train`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
