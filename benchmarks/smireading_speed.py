"""Time to read each nvidia-smi reading in tests/data/readings/ into a snapshot (provision.smireading), in
process, and `gpuprov doctor --from` on the largest one as a fresh process (what a user waits for).

    python benchmarks/smireading_speed.py [--runs 50]

Prints min / median per reading. Compare medians from one run of this script, never across machines.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provision import smireading  # noqa: E402

READINGS = ROOT / "tests/data/readings"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    files = sorted(p for p in READINGS.iterdir() if p.suffix in (".txt", ".xml"))
    for path in files:
        text = path.read_text(encoding="utf-8")
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            smireading.read(text)
            times.append(time.perf_counter() - t)
        print(
            f"{path.name:28} {len(text) // 1024:4d} KiB  min {min(times) * 1e3:6.2f} ms  "
            f"median {statistics.median(times) * 1e3:6.2f} ms"
        )
    largest = max(files, key=lambda p: p.stat().st_size)
    cmd = [sys.executable, "-m", "provision", "doctor", "--from", str(largest)]
    subprocess.run(cmd, capture_output=True, cwd=ROOT, check=False)
    walls = []
    for _ in range(max(3, args.runs // 10)):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, cwd=ROOT, check=False)
        walls.append(time.perf_counter() - t)
    print(f"gpuprov doctor --from {largest.name}: median {statistics.median(walls):.3f} s over {len(walls)} runs")


if __name__ == "__main__":
    main()
