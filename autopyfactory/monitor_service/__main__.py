"""``python -m autopyfactory.monitor_service`` = ``autopyfactory-monitor``."""

import sys

from autopyfactory.monitor_service.cli import main

sys.exit(main())
