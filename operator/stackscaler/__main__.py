"""``python -m stackscaler``."""

import sys

from stackscaler.cli import main

sys.exit(main())
