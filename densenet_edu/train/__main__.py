"""``python -m densenet_edu.train``: see ``--help``."""

import sys

from densenet_edu.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
