"""Time and peak memory of `greenery.generate` at a few scales (one fresh process per scale)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

SCALES = (1, 100, 1000, 10000)  # from 1000 on the peak grows only by the users' 16 bytes each

# Runs in the child: generate everything, keep nothing, report time and peak RSS (KiB on Linux).
_CHILD = """
import json, resource, sys, time
from greenery.data.generate import generate
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
start = time.perf_counter()
rows = 0
for _, chunk in generate(int(sys.argv[1])):
    rows += len(chunk)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"seconds": seconds, "rows": rows, "base_kib": base, "peak_kib": peak}))
"""


def measure(scale: int) -> dict[str, float]:
    """Seconds, rows, and peak RSS (after imports and at the end) of generating one scale."""
    src = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p)}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(scale)], capture_output=True, text=True, check=True, env=env
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(scales: tuple[int, ...] = SCALES) -> list[str]:
    """One printable line per scale."""
    lines = []
    for scale in scales:
        m = measure(scale)
        lines.append(
            f"generate scale {scale:>5}: {m['rows']:>10,} rows in {m['seconds']:6.2f} s,"
            f" peak RSS {m['peak_kib'] / 1024:7.0f} MiB ({m['base_kib'] / 1024:.0f} MiB after imports)"
        )
    return lines


if __name__ == "__main__":
    print("\n".join(run()))
