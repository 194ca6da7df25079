"""``python -m autopyfactory`` is the same as the ``autopyfactory`` command."""

from autopyfactory.cli.main import main

raise SystemExit(main())
