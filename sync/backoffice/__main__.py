"""``python -m sync.backoffice``: one back-office worker (the same as ``comptoir backoffice``)."""

import sys

from sync.backoffice.cli import main

sys.exit(main())
