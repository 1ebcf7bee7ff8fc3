"""Public test helpers and the pytest plugin (entry point ``pytest11``).

Fixtures are added as the asyncio layer lands; importing this module must stay
cheap because pytest loads it for every run.
"""

from __future__ import annotations
