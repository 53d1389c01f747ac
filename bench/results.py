"""Write one named section of bench/RESULTS.md, leaving the other sections as they are.

Each benchmark script owns sections delimited by ``<!-- BEGIN name -->`` / ``<!-- END name -->``;
re-running a script replaces only its own sections, so figures from separate runs can coexist.
"""

from __future__ import annotations

import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
ORDER = ["intro", "summary", "a1", "a2", "a3", "a4", "b", "c", "c-baseline", "breakdown", "scale-baseline", "scale"]
HEADER = """# vz benchmark results

Figures below come from the scripts in `bench/`; each section states the exact command, the
machine facts and the vz commit it measured. Timings on this machine are noisy (2 cores shared
with other jobs), so every goal is checked as a *ratio measured in one run*, with interleaved
repetitions and medians.
"""


def update_section(name: str, text: str) -> None:
    """Replace (or add, in `ORDER`) the section ``name`` of RESULTS.md with ``text``."""
    cur = RESULTS.read_text() if RESULTS.exists() else HEADER
    block = f"<!-- BEGIN {name} -->\n{text.rstrip()}\n<!-- END {name} -->"
    pat = re.compile(rf"<!-- BEGIN {re.escape(name)} -->.*?<!-- END {re.escape(name)} -->", re.S)
    if pat.search(cur):
        cur = pat.sub(lambda _m: block, cur)
    else:
        # insert before the first later section that exists, else append
        later = ORDER[ORDER.index(name) + 1:] if name in ORDER else []
        pos = len(cur)
        for other in later:
            m = re.search(rf"<!-- BEGIN {re.escape(other)} -->", cur)
            if m:
                pos = min(pos, m.start())
        cur = cur[:pos].rstrip() + "\n\n" + block + "\n" + cur[pos:]
    RESULTS.write_text(cur.rstrip() + "\n")
