"""``python3 -m tests.system NAME``: build root NAME if needed and print its path."""

from __future__ import annotations

import sys

from .roots import main

sys.exit(main(sys.argv[1:]))
