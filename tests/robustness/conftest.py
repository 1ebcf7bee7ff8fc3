"""Robustness suite (issue 8): fuzz targets, DoS limits, chaos runs, crypto
and resource hygiene.  Long variants run only with ``AIOIPSEC_SOAK=1``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
for p in (ROOT / "fuzz", ROOT / "tests" / "integration", HERE):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

SOAK = os.environ.get("AIOIPSEC_SOAK") == "1"
"""Opt-in: more seeds, more examples, longer floods."""
