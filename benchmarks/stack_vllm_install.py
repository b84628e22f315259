"""A plain install of a vLLM stack: the floor that gpuprov's environment step is compared against (issue 16).

    python benchmarks/stack_vllm_install.py [--from SNAPSHOT] [--driver VERSION] [--python 3.12]
        [--cache-dir DIR] [--runs cold,warm,copy] [--workdir /tmp/stack-bench] [--markdown FILE]

The set is what `gpuprov compat plan --engine vllm --json` chooses for the snapshot (its "install" list, its
pins as constraints, an extra index when a pin names one); the install is exactly what a user would type:
`uv venv --python PY VENV` then `uv pip install --python VENV/bin/python INSTALL... -c CONSTRAINTS` into an
empty venv. "cold" runs with an empty uv cache of its own (WORKDIR/uv-cache, or a --cache-dir that is empty
or not there yet: emptied first, every wheel is downloaded and unpacked); "warm" runs again with that cache
filled (uv links from it, the case of a second host or a rebuilt environment); "copy" is warm with
UV_LINK_MODE=copy (a cache on another file system, or a venv that must not share inodes with it). Disk is
the venv's, counted like du (each inode once, allocated blocks); uv links files from its cache when the
cache is on the same file system, so the cache's size, and the venv's and the cache's together, are printed
too. Not in CI (GBs of wheels, minutes). Other code imports :func:`plain_install` to measure the same floor
next to its own step.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: RTX 4090 Laptop (seed 003's machine) on a 570 driver: issue 16's first case
DEFAULT_SNAPSHOT = ROOT / "tests" / "data" / "snapshots" / "rtx4090-laptop.constructed.json"
DEFAULT_DRIVER = "570.124.06"


def _uv() -> list[str]:
    return [shutil.which("uv")] if shutil.which("uv") else [sys.executable, "-m", "uv"]  # type: ignore[list-item]


def disk_bytes(*paths: Path) -> int:
    """Allocated bytes under ``paths``, each inode counted once (what ``du -s --block-size=1 -c`` prints):
    a venv whose files uv linked from its cache counts once with the cache."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for path in paths:
        for dirpath, dirnames, filenames in os.walk(path):
            for name in [".", *dirnames, *filenames]:
                st = os.lstat(os.path.join(dirpath, name))
                if (st.st_dev, st.st_ino) not in seen:
                    seen.add((st.st_dev, st.st_ino))
                    total += st.st_blocks * 512
    return total


def installed(python: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The venv's installed set, name -> version, read by uv from metadata (nothing imported)."""
    out = subprocess.run(
        [*_uv(), "pip", "list", "--python", str(python), "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
        env=dict(env) if env is not None else None,
    ).stdout
    return {row["name"]: row["version"] for row in json.loads(out)}


def plain_install(
    venv: Path,
    requirements: Sequence[str],
    constraints: Path | None,
    indexes: Sequence[str] = (),
    *,
    python: str = "3.12",
    env: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """``uv venv`` + ``uv pip install`` of ``requirements`` (with ``-c constraints``, ``indexes`` as extra
    indexes) into a new venv at ``venv`` (removed first). Returns seconds (both commands together, with
    venv_seconds and install_seconds apart), bytes (the venv on disk, like du), packages (name -> version,
    the installed set). ``env``: the environment of both commands (e.g. UV_CACHE_DIR); os.environ if None."""
    shutil.rmtree(venv, ignore_errors=True)
    run_env = dict(env) if env is not None else dict(os.environ)
    cmd_venv = [*_uv(), "venv", "--quiet", "--python", python, str(venv)]
    cmd_install = [*_uv(), "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"), *requirements]
    if constraints is not None:
        cmd_install += ["-c", str(constraints)]
    for url in indexes:
        cmd_install += ["--extra-index-url", url]
    if indexes:
        # the plan's own advice (Plan.constraints): a pinned torch from its index, the rest from PyPI
        cmd_install += ["--index-strategy", "unsafe-best-match"]
    t0 = time.perf_counter()
    subprocess.run(cmd_venv, check=True, env=run_env)
    t1 = time.perf_counter()
    subprocess.run(cmd_install, check=True, env=run_env)
    t2 = time.perf_counter()
    return {
        "seconds": t2 - t0,
        "venv_seconds": t1 - t0,
        "install_seconds": t2 - t1,
        "bytes": disk_bytes(venv),
        "packages": installed(venv / "bin" / "python", run_env),
    }


def planned_set(snapshot: Path, driver: str | None, engine: str = "vllm") -> tuple[list[str], str, list[str], dict]:
    """(install list, constraints text, extra indexes, the plan's JSON) from `gpuprov compat plan`."""
    args = [sys.executable, "-m", "provision", "compat", "plan", "--engine", engine, "--from", str(snapshot)]
    if driver:
        args += ["--driver", driver]
    as_json = json.loads(subprocess.run([*args, "--json"], capture_output=True, text=True, check=True).stdout)
    constraints = subprocess.run([*args, "--format", "constraints"], capture_output=True, text=True, check=True).stdout
    indexes = sorted({p["index"] for p in as_json["pins"] if p["index"]})
    return list(as_json["install"]), constraints, indexes, as_json


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--from", dest="snapshot", type=Path, default=DEFAULT_SNAPSHOT)
    ap.add_argument("--driver", default=DEFAULT_DRIVER, help="what-if driver ('' for the snapshot's)")
    ap.add_argument("--python", default="3.12", help="uv venv --python (a version or an interpreter path)")
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "stack-bench")
    ap.add_argument("--cache-dir", type=Path, help="the uv cache of the runs (default WORKDIR/uv-cache)")
    ap.add_argument("--runs", default="cold,warm,copy", help="comma-separated: cold (cache emptied first), warm, copy")
    ap.add_argument("--markdown", type=Path, help="append the figures as a markdown section to this file")
    args = ap.parse_args()

    install, constraints_text, indexes, plan = planned_set(args.snapshot, args.driver or None)
    args.workdir.mkdir(parents=True, exist_ok=True)
    constraints = args.workdir / "constraints.txt"
    constraints.write_text(constraints_text, encoding="utf-8")
    cache = args.cache_dir or args.workdir / "uv-cache"
    env = {**os.environ, "UV_CACHE_DIR": str(cache)}
    pins = ", ".join(f"{p['name']}=={p['version']}" for p in plan["pins"])
    print(f"plan: install {' '.join(install)}; pins {pins}; indexes {indexes or 'PyPI only'}", flush=True)
    rows = []
    for run in [r.strip() for r in args.runs.split(",") if r.strip()]:
        if run == "cold":
            if cache != args.workdir / "uv-cache" and cache.exists() and any(cache.iterdir()):
                sys.exit(f"--runs cold empties the uv cache: {cache} is not empty (give a cache of its own)")
            shutil.rmtree(cache, ignore_errors=True)
        elif run not in ("warm", "copy"):
            sys.exit(f"--runs: {run!r} is not cold, warm or copy")
        run_env = {**env, "UV_LINK_MODE": "copy"} if run == "copy" else env
        venv = args.workdir / f"venv-{run}"
        result = plain_install(venv, install, constraints, indexes, python=args.python, env=run_env)
        packages = result["packages"]
        assert isinstance(packages, dict)
        for p in plan["pins"]:  # the install is the plan's, or the figures are of something else
            if packages.get(p["name"]) != p["version"]:
                sys.exit(f"{p['name']} installed {packages.get(p['name'])}, the plan pins {p['version']}")
        row = {
            "run": run,
            "seconds": round(float(result["seconds"]), 1),  # type: ignore[arg-type]
            "venv_seconds": round(float(result["venv_seconds"]), 2),  # type: ignore[arg-type]
            "install_seconds": round(float(result["install_seconds"]), 1),  # type: ignore[arg-type]
            "venv_bytes": result["bytes"],
            "cache_bytes": disk_bytes(cache),
            "venv_and_cache_bytes": disk_bytes(venv, cache),
            "packages": len(packages),
            "versions": {n: packages.get(n) for n in ("torch", "vllm", "flashinfer-python")},
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        shutil.rmtree(venv)  # GBs: one venv at a time
    if args.markdown:
        commit = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        lines = [
            f"\n## {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, commit {commit}\n",
            f"Set: `{' '.join(install)}` with `-c` the plan's pins ({pins}); {indexes or 'PyPI only'}; "
            f"snapshot {args.snapshot.relative_to(ROOT) if args.snapshot.is_relative_to(ROOT) else args.snapshot}"
            f"{f', what-if driver {args.driver}' if args.driver else ''}; Python {args.python}.\n",
            "| run | uv venv + uv pip install | of which install | venv on disk (du) | uv cache after | "
            "venv and cache together | packages | torch | vllm | flashinfer-python |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        ]
        for r in rows:
            v = r["versions"]
            lines.append(
                f"| {r['run']} | {r['seconds']} s | {r['install_seconds']} s | {_gib(r['venv_bytes'])} | "
                f"{_gib(r['cache_bytes'])} | {_gib(r['venv_and_cache_bytes'])} | {r['packages']} | "
                f"{v['torch']} | {v['vllm']} | {v['flashinfer-python']} |"
            )
        with args.markdown.open("a", encoding="utf-8") as fh:
            fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
