"""``python -m sessionactor``: the same command line as the ``sessionactor`` script."""

from .cli import main

raise SystemExit(main())
