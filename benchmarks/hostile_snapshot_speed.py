"""How long gpuprov takes to refuse (or show) a hostile snapshot, and what the checks cost a normal one.

    python benchmarks/hostile_snapshot_speed.py [--runs 5]

Writes the snapshots into a temporary directory: a recorded-size one (h100, 26 KB), a GPU name at the
64 Ki-character limit (shown), a 10 M-character name (refused by the string bound), a 100 MB name
(refused by the 16 MiB file bound), JSON nested 100000 deep (refused). For each: `gpuprov doctor --from`
as a fresh process (what a user waits for; min / median of --runs), and `Snapshot.load` in-process.
Also the in-process cost of making every text of the h100 snapshot printable (provision.console
.printable_copy, what the probe does to a live snapshot). Before these bounds (commit 7618f9a) the time
grew with the name: doctor --from took 0.50 s with a 64 Ki-character name, 1.01 s with 1 M characters,
and minutes with the 100 MB name of issue 14, item 9.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from provision.console import printable_copy  # noqa: E402
from provision.errors import SnapshotError  # noqa: E402
from provision.snapshot import Snapshot  # noqa: E402

H100 = ROOT / "tests/data/snapshots/h100.constructed.json"


def cases(directory: Path) -> dict[str, Path]:
    base = json.loads(H100.read_text())
    out = {"h100 (26 KB)": H100}
    for label, size in (
        ("name of 65536 chars", 65536),
        ("name of 10 M chars", 10_000_000),
        ("name of 100 M chars", 100_000_000),
    ):
        data = json.loads(json.dumps(base))
        data["gpus"][0]["name"] = "x" * size
        path = directory / f"{size}.json"
        path.write_text(json.dumps(data))
        out[label] = path
    deep = directory / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    out["nested 100000 deep"] = deep
    return out


def cli_seconds(path: Path, runs: int) -> tuple[float, float, int]:
    env = {k: v for k, v in os.environ.items() if k not in ("GPUPROV_NVML_REPLAY", "PYTHONDONTWRITEBYTECODE")}
    cmd = [sys.executable, "-m", "provision", "doctor", "--from", str(path)]
    code = subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT).returncode  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, env=env, cwd=ROOT)
        times.append(time.perf_counter() - t)
    return min(times), statistics.median(times), code


def load_seconds(path: Path) -> tuple[float, str]:
    t = time.perf_counter()
    try:
        Snapshot.load(path)
        outcome = "loaded"
    except SnapshotError as exc:
        outcome = "refused: " + str(exc).split(": ", 1)[1][:60]
    return time.perf_counter() - t, outcome


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    Snapshot.load(H100)  # imports and compiled patterns: not part of what each load costs
    with tempfile.TemporaryDirectory() as tmp:
        for label, path in cases(Path(tmp)).items():
            low, median, code = cli_seconds(path, args.runs)
            load_s, outcome = load_seconds(path)
            print(
                f"{label:22s} doctor --from: min {low:.3f} s, median {median:.3f} s, exit {code}; "
                f"Snapshot.load {load_s * 1000:.1f} ms ({outcome})"
            )
    snap = Snapshot.load(H100)
    n = 200
    t = time.perf_counter()
    for _ in range(n):
        printable_copy(snap)
    print(f"printable_copy(h100 snapshot): {(time.perf_counter() - t) / n * 1000:.2f} ms each ({n} runs)")


if __name__ == "__main__":
    main()
