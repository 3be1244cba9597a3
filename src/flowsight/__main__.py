"""``python -m flowsight``: the same as the ``flowsight`` command."""

from __future__ import annotations

import sys

from flowsight.cli import main

sys.exit(main())
