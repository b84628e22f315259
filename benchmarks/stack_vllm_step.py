"""gpuprov's environment step against the plain install of the same vLLM set, side by side (issue 16).

    python benchmarks/stack_vllm_step.py [--repeat 3] [--cache-dir /tmp/r16/bench/uv-cache] [--markdown FILE]

The set is the one the built-in rtx4090-laptop profile's stack plans for an RTX 4090 Laptop on a 570 driver
(provision.stack.spec.make_spec: compat plan's vllm/torch/flashinfer-python pins, prune torchvision). Both
sides use the same uv cache (warm: filled once before timing, so both link from it and the figures are the
step's own cost, not the download) and the same interpreter (/usr/bin/python3.11):

* plain: ``uv venv`` + ``uv pip install -c CONSTRAINTS REQS`` into an empty venv
  (benchmarks/stack_vllm_install.py's plain_install);
* gpuprov: provision.stack.build.apply_spec — the same install plus what gpuprov adds: choosing the
  interpreter, compat check of what got installed (metadata, nothing imported), the prune step's dependency
  graph, ``uv pip freeze`` into the lock file, the record, the atomic switch.

Runs alternate (plain, gpuprov, plain, ...); medians. Then the no-change second apply of the gpuprov side
(apply_spec finding the environment in use as planned: read from metadata) and its phases. Not in CI.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from provision.snapshot import Snapshot  # noqa: E402
from provision.stack.build import apply_spec  # noqa: E402
from provision.stack.section import StackSection  # noqa: E402
from provision.stack.spec import SpecInputs, make_spec  # noqa: E402

SNAPSHOT = ROOT / "tests/data/snapshots/rtx4090-laptop.constructed.json"
DRIVER = "570.124.06"
PYTHON = "/usr/bin/python3.11"


def _plain_module():
    spec = importlib.util.spec_from_file_location("stack_vllm_install", ROOT / "benchmarks/stack_vllm_install.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--cache-dir", type=Path, default=Path("/tmp/r16/bench/uv-cache"))
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "stack-step-bench")
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args()
    os.environ["UV_CACHE_DIR"] = str(args.cache_dir)
    os.environ["GPUPROV_PYTHON_INSTALL_DIR"] = str(args.workdir / "pythons")
    plain = _plain_module()
    snap = Snapshot.load(SNAPSHOT)
    snap = dataclasses.replace(snap, driver=dataclasses.replace(snap.driver, driver_version=DRIVER))
    from provision.serving.settings import ServingSection, VllmSettings

    serving = ServingSection("vllm", VllmSettings(model="m", venv=str(args.workdir / "envs/vllm")), port=8000)
    spec = make_spec(StackSection(python=PYTHON, prune=("torchvision",)), serving, snap, SpecInputs("3.11"))
    constraints = args.workdir / "constraints.txt"
    shutil.rmtree(args.workdir, ignore_errors=True)
    args.workdir.mkdir(parents=True)
    constraints.write_text("\n".join(spec.constraints) + "\n")
    env = {**os.environ}
    print(f"set: {spec.summary()} ({', '.join(spec.requirements)}), cache {args.cache_dir}", flush=True)
    # warm the cache (not timed)
    plain.plain_install(args.workdir / "warmup", list(spec.requirements), constraints, [], python=PYTHON, env=env)
    shutil.rmtree(args.workdir / "warmup")
    rows: dict[str, list[float]] = {"plain": [], "gpuprov": []}
    phases: list[dict[str, float]] = []
    result: Any = None
    packages = 0

    def settle() -> None:
        """Removing 10 GiB of links leaves the disk busy: wait for it before the next timed run."""
        subprocess.run(["sync"], check=False)
        time.sleep(2)

    def run_plain(i: int) -> None:
        nonlocal packages
        venv = args.workdir / f"plain-{i}"
        got = plain.plain_install(venv, list(spec.requirements), constraints, [], python=PYTHON, env=env)
        rows["plain"].append(got["seconds"])
        packages = len(got["packages"])
        shutil.rmtree(venv)
        settle()

    def run_gpuprov(i: int) -> None:
        nonlocal result
        t = time.monotonic()
        result = apply_spec(spec, snap, state_dir=args.workdir / f"state-{i}", log_path=args.workdir / f"stack-{i}.log")
        rows["gpuprov"].append(time.monotonic() - t)
        phases.append(result.phases)
        if i < args.repeat - 1:  # the last one stays for the no-change runs
            shutil.rmtree(Path(spec.home))
            Path(spec.link).unlink()
            settle()

    settle()
    for i in range(args.repeat):  # alternate which goes first: neither always runs after the other's removal
        first, second = (run_plain, run_gpuprov) if i % 2 == 0 else (run_gpuprov, run_plain)
        first(i)
        second(i)
        print(f"run {i}: plain {rows['plain'][-1]:.2f} s, gpuprov {rows['gpuprov'][-1]:.2f} s {phases[-1]}", flush=True)
    state = args.workdir / f"state-{args.repeat - 1}"
    assert result is not None
    again = []
    for _ in range(5):
        t = time.monotonic()
        second = apply_spec(spec, snap, state_dir=state, log_path=args.workdir / "again.log")
        again.append(time.monotonic() - t)
        assert not second.changed
    plan_cmd = [
        sys.executable,
        "-c",
        "import sys, pathlib, provision.stack.installed as i;"
        "print(len(i.installed_versions(pathlib.Path(sys.argv[1]))))",
        spec.home,
    ]
    t = time.monotonic()
    count = subprocess.run(plan_cmd, capture_output=True, text=True, check=True).stdout.strip()
    read_s = time.monotonic() - t
    du = subprocess.run(["du", "-sb", spec.home], capture_output=True, text=True).stdout.split()[0]
    p, g = statistics.median(rows["plain"]), statistics.median(rows["gpuprov"])
    load = os.getloadavg()
    out = {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "load": [round(x, 1) for x in load],
        "set": spec.summary(),
        "packages": packages,
        "plain_s": rows["plain"],
        "gpuprov_s": rows["gpuprov"],
        "ratio": round(g / p, 2),
        "phases": phases,
        "no_change_s": again,
        "metadata_read_process_s": round(read_s, 3),
        "metadata_dists": count,
        "kept": result.kept,
        "pruned": result.pruned,
        "home_bytes": int(du),
    }
    print(json.dumps(out, indent=1))
    if args.markdown:
        with args.markdown.open("a") as fh:
            fh.write(
                f"\n## {out['date']}, commit {out['commit']} (load {out['load']})\n\n"
                f"Set: {out['set']} ({packages} packages), warm uv cache, {PYTHON}, {args.repeat} runs alternating.\n\n"
                "| | plain uv venv + uv pip install | gpuprov apply_spec | gpuprov / plain |\n"
                "| --- | ---: | ---: | ---: |\n"
                f"| median | {p:.2f} s | {g:.2f} s | {g / p:.2f}× |\n"
                f"| runs | {', '.join(f'{x:.2f}' for x in rows['plain'])} | "
                f"{', '.join(f'{x:.2f}' for x in rows['gpuprov'])} | |\n\n"
                f"gpuprov's phases (s): {phases}\n\n"
                f"No-change second apply (apply_spec finds the planned set, from metadata): "
                f"{', '.join(f'{x:.3f}' for x in again)} s. The environment: {int(du) / 2**30:.2f} GiB (du -sb, "
                f"hardlinked from the cache). Prune: kept {result.kept}, removed {result.pruned or 'nothing'}.\n"
            )
    shutil.rmtree(args.workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
