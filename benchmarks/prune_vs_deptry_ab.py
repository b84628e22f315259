"""``gpuprov prune`` now against an older checkout of gpuprov, side by side on the same real projects.

Each repetition runs, for each tree in turn, a cold prune (empty ``GPUPROV_PRUNE_CACHE``) and a re-run
on the unchanged tree (warm cache), so both trees meet the same load; medians are printed. The projects
and their environments are the ones ``benchmarks/prune_vs_deptry.py --work DIR`` prepared in ``DIR``.

    git worktree add --detach /tmp/gpuprov-before <commit>
    uv run python benchmarks/prune_vs_deptry_ab.py --before /tmp/gpuprov-before --work /tmp/f_bench --repeat 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = ("httpx", "starlette", "flask", "fastapi", "pretalx")


def run(tree: Path, project: Path, python: Path, cache: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(tree), "GPUPROV_PRUNE_CACHE": str(cache)}
    cmd = [sys.executable, "-m", "provision", "prune", str(project), "--python", str(python), "--json"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=600, check=False)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"prune failed in {tree} on {project}: {proc.stderr.strip()[-300:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="an older gpuprov checkout")
    parser.add_argument("--work", type=Path, required=True, help="prune_vs_deptry.py's --work directory")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--projects", nargs="*", default=list(PROJECTS))
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "now": ROOT}
    head = ("project", "before first", "now first", "now/before", "before rerun", "now rerun")
    print(f"{head[0]:10} {head[1]:>12} {head[2]:>9} {head[3]:>10} {head[4]:>12} {head[5]:>9}")
    with tempfile.TemporaryDirectory(prefix="prune-ab-") as tmp:
        for name in args.projects:
            project = next(p for p in (args.work / "src" / name).iterdir() if p.is_dir())  # the unpacked sdist
            python = args.work / "venvs" / name / "bin" / "python"
            times: dict[str, list[float]] = {f"{t} {m}": [] for t in trees for m in ("first", "rerun")}
            for _ in range(args.repeat):
                for label, tree in trees.items():
                    cache = Path(tmp) / label / name
                    shutil.rmtree(cache, ignore_errors=True)
                    times[f"{label} first"].append(run(tree, project, python, cache))
                    times[f"{label} rerun"].append(run(tree, project, python, cache))
            m = {k: statistics.median(v) for k, v in times.items()}
            ratio = m["now first"] / m["before first"]
            print(
                f"{name:10} {m['before first']:>12.3f} {m['now first']:>9.3f} {ratio:>10.2f} "
                f"{m['before rerun']:>12.3f} {m['now rerun']:>9.3f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
