"""``python -m lesionlab``."""

import sys

from lesionlab.cli import main

sys.exit(main())
