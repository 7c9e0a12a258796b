"""``python -m scanner``: the same as the ``scanner`` command."""

import sys

from scanner.cli import main

sys.exit(main())
