"""``python -m bench`` (``make bench``): see :mod:`bench.run`."""

from .run import main

raise SystemExit(main())
