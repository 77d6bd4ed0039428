"""``python -m sync --config FILE``: the sync process (same as ``comptoir sync``)."""

import sys

from sync.service import main

sys.exit(main())
