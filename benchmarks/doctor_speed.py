"""Wall time of `gpuprov doctor` against `python -m torch.utils.collect_env`, the tool people use today.

    python benchmarks/doctor_speed.py [--runs 10] [--torch-python /path/to/python/with/torch]

Each command runs as a fresh process (what a user waits for) with bytecode caching on
(PYTHONDONTWRITEBYTECODE is dropped), output discarded; prints min / median / max per command, and the
ratio. Target: the full doctor report under 0.5 s on a GPU host. Noisy machines: compare medians from
one run of this script, never across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def timed(cmd: list[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    subprocess.run(cmd, capture_output=True, env=env)  # warm the page cache once
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=env)
        out.append(time.perf_counter() - t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--torch-python", help="interpreter with torch installed, for collect_env")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    results = {}
    env = dict(os.environ)
    # as on a user's machine: bytecode caches are written on the warm-up run and used afterwards
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    results["gpuprov doctor"] = timed([sys.executable, "-m", "provision", "doctor"], args.runs, env)
    results["gpuprov doctor --json"] = timed([sys.executable, "-m", "provision", "doctor", "--json"], args.runs, env)
    results["gpuprov --help"] = timed([sys.executable, "-m", "provision", "--help"], args.runs, env)
    if args.torch_python:
        results["torch.utils.collect_env"] = timed(
            [args.torch_python, "-m", "torch.utils.collect_env"], max(3, args.runs // 3), env
        )
    summary = {
        name: {"min_s": min(v), "median_s": statistics.median(v), "max_s": max(v), "runs": len(v)}
        for name, v in results.items()
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return
    for name, s in summary.items():
        print(
            f"{name:28s} min {s['min_s']:.3f} s  median {s['median_s']:.3f} s  "
            f"max {s['max_s']:.3f} s  ({s['runs']} runs)"
        )
    if "torch.utils.collect_env" in summary:
        ratio = summary["torch.utils.collect_env"]["median_s"] / summary["gpuprov doctor"]["median_s"]
        print(f"collect_env / doctor (medians): {ratio:.1f}x")


if __name__ == "__main__":
    main()
