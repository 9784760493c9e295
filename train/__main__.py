"""``python -m crsnn.train`` = ``crsnn-train``."""

import sys

from .cli import main

sys.exit(main())
