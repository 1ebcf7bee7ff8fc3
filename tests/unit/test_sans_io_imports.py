"""The sans-I/O core must not pull in asyncio or socket (DESIGN.md §1)."""

from __future__ import annotations

import subprocess
import sys

FORBIDDEN = ("asyncio", "socket", "selectors", "aioipsec.transports", "aioipsec.asyncio")


def test_esp_and_crypto_do_not_import_io() -> None:
    code = (
        "import sys\n"
        "import aioipsec.esp, aioipsec.crypto\n"
        "import aioipsec.esp.sa, aioipsec.esp.ah, aioipsec.esp.natt, aioipsec.esp.ip, aioipsec.esp.replay\n"
        "import aioipsec.crypto.cipher, aioipsec.crypto.transforms\n"
        f"bad = [m for m in {FORBIDDEN!r} if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"sans-I/O core imported: {out.stdout.strip()}"
