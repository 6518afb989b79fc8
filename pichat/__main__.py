"""``python -m pichat``: the same as the ``pichat`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
