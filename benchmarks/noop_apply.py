"""Wall time of a no-op `gpuprov apply PROFILE --root DIR` against a bare one-task `ansible-playbook` run.

    python benchmarks/noop_apply.py [--runs 7] [--profile rtx4090] [--snapshot rtx4090.constructed]

The GPU is replayed (GPUPROV_NVML_REPLAY, a copy of tests/data/snapshots/SNAPSHOT.json) and
GPUPROV_NVML_REPLAY_ROOT=DIR makes the throw-away tree this host (GPU settings applied, not an image).
apply runs once to make the changes; every timed apply after it is a no-op. The baseline is what any
playbook costs on this machine: ansible-playbook on localhost (connection local, the interpreter set
explicitly) with one ansible.builtin.ping task. The two alternate run by run (noisy shared machine);
prints min / median / max of each and the ratio of the medians (issue 15's goal: at most 2x).
Needs root (the replay's NVML setters, like the real ones, refuse a user).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = ROOT / "tests" / "data" / "snapshots"

ONE_TASK = """\
- name: One task, for the cost of ansible-playbook itself.
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Ping.
      ansible.builtin.ping:
"""


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--profile", default="rtx4090")
    ap.add_argument("--snapshot", default="rtx4090.constructed")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="gpuprov-noop-") as tmp_s:
        tmp = Path(tmp_s)
        tree = tmp / "root"
        tree.mkdir()
        gpu = tmp / "gpu.json"
        shutil.copy(SNAPSHOTS / f"{args.snapshot}.json", gpu)
        env = {
            **os.environ,
            "GPUPROV_NVML_REPLAY": str(gpu),
            "GPUPROV_NVML_REPLAY_ROOT": str(tree),
            "GPUPROV_STATE_DIR": str(tmp / "state"),
            "XDG_CONFIG_HOME": str(tmp / "config"),
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env.pop("GPUPROV_NVML_REPLAY_AS_USER", None)
        playbook = tmp / "one-task.yml"
        playbook.write_text(ONE_TASK)
        bindir = Path(sys.executable).parent
        ansible = str(bindir / "ansible-playbook") if (bindir / "ansible-playbook").exists() else "ansible-playbook"
        apply_cmd = [sys.executable, "-m", "provision", "apply", args.profile, "--root", str(tree), "--json"]
        bare_cmd = [
            ansible,
            "-i",
            "localhost,",
            "-c",
            "local",
            "-e",
            f"ansible_python_interpreter={sys.executable}",
            str(playbook),
        ]
        _timed(apply_cmd, env)  # the first apply changes things; the timed ones change nothing
        check = json.loads(subprocess.run(apply_cmd, env=env, capture_output=True, text=True, check=True).stdout)
        if check["changed"]:
            sys.exit(f"the second apply still changed {check['changed']} item(s): not a no-op")
        _timed(bare_cmd, env)
        times: dict[str, list[float]] = {"gpuprov apply (no-op)": [], "ansible-playbook, one task": []}
        for _ in range(args.runs):
            times["gpuprov apply (no-op)"].append(_timed(apply_cmd, env))
            times["ansible-playbook, one task"].append(_timed(bare_cmd, env))
    summary = {
        name: {"min_s": min(v), "median_s": statistics.median(v), "max_s": max(v), "runs": len(v)}
        for name, v in times.items()
    }
    ratio = summary["gpuprov apply (no-op)"]["median_s"] / summary["ansible-playbook, one task"]["median_s"]
    if args.json:
        print(json.dumps({"runs": summary, "ratio": ratio}, indent=2))
        return
    for name, s in summary.items():
        print(
            f"{name:28s} min {s['min_s']:.2f} s  median {s['median_s']:.2f} s"
            f"  max {s['max_s']:.2f} s  ({s['runs']} runs)"
        )
    print(f"ratio of the medians: {ratio:.2f}x")


if __name__ == "__main__":
    main()
