"""The IKEv1 session is sans-I/O (DESIGN.md §1): importing it pulls in no
asyncio or transport module, and its source opens no socket and reads no
clock (``socket`` itself gets imported by ``cryptography.x509`` through
``email.utils``, which is not I/O of ours)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

FORBIDDEN = ("asyncio", "aioipsec.transports", "aioipsec.asyncio", "aioipsec.daemon")


def test_ikev1_does_not_import_io() -> None:
    code = (
        "import sys\n"
        "import aioipsec.ike.v1, aioipsec.ike.v1.session, aioipsec.ike.v1.tasks.quick_mode\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"sans-I/O IKEv1 imported: {out.stdout.strip()}"


def test_ikev1_source_reads_no_clock_and_opens_no_socket() -> None:
    import aioipsec.ike.v1 as pkg

    root = Path(pkg.__file__).parent
    files = sorted(root.rglob("*.py"))
    assert len(files) >= 10
    for f in files:
        text = f.read_text()
        assert not re.search(r"^\s*(import|from) (time|socket|asyncio|selectors)\b", text, re.M), f
        assert not re.search(r"\btime\.(time|monotonic|perf_counter)\(", text), f
