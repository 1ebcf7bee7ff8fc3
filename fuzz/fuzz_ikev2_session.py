"""atheris harness: ``fuzzlib.ikev2_session`` (see fuzz/README.md).

    .venv/bin/python fuzz/fuzz_ikev2_session.py -max_total_time=300 -rss_limit_mb=2048 [CORPUS_DIR]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import fuzzlib  # noqa: E402

if __name__ == "__main__":
    fuzzlib.main("ikev2_session")
