"""Wall time of a fleet rollout (``ansible-playbook playbooks/site.yml``) on 1, 4 and 8 real systemd hosts.

    python benchmarks/fleet_rollout.py [--sizes 1,4,8] [--serial 100%] [--json FILE]

Per fleet size: boots that many Debian hosts with systemd-nspawn (tests/integration/nspawn.py, in
parallel), gives them replayed GPUs (molecule/shared/prepare.yml: RTX 4090, RTX 4090 Laptop GPU and
H100 snapshots in turn, profile auto), then times

- ``first``: the rollout on bare hosts — uv and the gpuprov wheel copied, the virtualenv made from the
  offline wheelhouse (scripts/wheelhouse), profile chosen, GPU settings, files, units, servers' users;
- ``again``: the same playbook on the converged fleet (nothing changes: what a periodic run costs),

and powers the hosts off. The aim: 8 hosts take under 3 times as long as 1. Needs root, debootstrap,
systemd-nspawn and ssh (the package index once, to fill the wheelhouse). The machine's load shows in
the figures: compare sizes from one run of this script, never across machines.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.integration import molecule_hosts, nspawn  # noqa: E402

BIN = Path(sys.executable).parent
SNAPSHOTS = ["rtx4090", "rtx4090-laptop", "h100"]


def ansible_env(work: Path, summary: Path) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}:{os.environ.get('PATH', '')}",
        "ANSIBLE_HOST_KEY_CHECKING": "false",
        "ANSIBLE_PIPELINING": "true",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_LOCAL_TEMP": str(work / "ansible-local"),
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s -o UserKnownHostsFile=/dev/null",
        "GPUPROV_FLEET_SUMMARY": str(summary),
    }


def inventory(hosts: list[dict], wheel: Path, wheelhouse: Path) -> dict:
    hv = {}
    for i, h in enumerate(hosts):
        snap = SNAPSHOTS[i % len(SNAPSHOTS)]
        hv[h["name"]] = {
            "ansible_host": h["host"],
            "ansible_port": h["port"],
            "ansible_user": h["user"],
            "ansible_ssh_private_key_file": h["key"],
            "gpuprov_profile": "auto",
            "gpuprov_test_snapshot": str(ROOT / f"tests/data/snapshots/{snap}.constructed.json"),
            "gpuprov_test_ollama": snap == "rtx4090",
        }
    return {
        "all": {
            "vars": {
                "ansible_python_interpreter": "/usr/bin/python3",
                "gpuprov_test_replay": "/var/lib/gpuprov-test/gpu.json",
                "gpuprov_test_ca_file": "/etc/gpuprov-test/ca.crt",
                "gpuprov_environment": {"GPUPROV_NVML_REPLAY": "/var/lib/gpuprov-test/gpu.json"},
                "gpuprov_host_wheel": str(wheel),
                "gpuprov_host_wheelhouse": str(wheelhouse),
            },
            "hosts": hv,
        }
    }


def playbook(path: Path, inv: Path, env: dict[str, str], *args: str) -> float:
    t = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inv), str(path), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - t
    if proc.returncode != 0:
        sys.exit(f"{path.name} failed (exit {proc.returncode}):\n{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}")
    return took


def measure(size: int, serial: str, wheel: Path, wheelhouse: Path, work: Path) -> dict:
    names = [f"bench{size}-{i}" for i in range(size)]
    state = work / f"hosts-{size}"
    summary = work / f"summary-{size}.json"
    env = ansible_env(work, summary)
    t = time.perf_counter()
    infos = molecule_hosts.create(names, state, work / f"instances-{size}.yml")
    boot_s = time.perf_counter() - t
    try:
        inv = work / f"inventory-{size}.yml"
        inv.write_text(yaml.safe_dump(inventory(infos, wheel, wheelhouse), sort_keys=False))
        forks = ["--forks", str(max(5, size))]
        playbook(ROOT / "molecule/shared/prepare.yml", inv, env, *forks)
        site = ROOT / "playbooks/site.yml"
        first_s = playbook(site, inv, env, *forks, "-e", f"gpuprov_serial={serial}")
        rows = json.loads(summary.read_text())["hosts"]
        assert all(r["status"] == "changed" for r in rows), rows
        again_s = playbook(site, inv, env, *forks, "-e", f"gpuprov_serial={serial}")
        rows = json.loads(summary.read_text())["hosts"]
        assert all(r["status"] == "unchanged" and r["changed"] == 0 for r in rows), rows
    finally:
        molecule_hosts.destroy(names, state)
    return {"hosts": size, "boot_s": boot_s, "first_s": first_s, "again_s": again_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1,4,8", help="fleet sizes, comma-separated (default 1,4,8)")
    ap.add_argument("--serial", default="100%", help="batch size of the rollout (gpuprov_serial), default 100%%")
    ap.add_argument("--json", type=Path, help="also write the figures to this file")
    args = ap.parse_args()
    missing = nspawn.missing_tools()
    if missing:
        sys.exit(f"cannot boot test hosts here: missing {', '.join(missing)}")
    sizes = [int(s) for s in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="gpuprov-fleet-bench-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}"}
        subprocess.run(
            [sys.executable, "-m", "uv", "build", "--wheel", "--quiet", "--out-dir", str(work / "dist"), str(ROOT)],
            env=env,
            check=True,
        )
        wheel = next((work / "dist").glob("gpuprov-*.whl"))
        wheelhouse = molecule_hosts.wheelhouse("3.11")  # the hosts run Debian bookworm's Python 3.11
        nspawn.base_rootfs()
        results = [measure(n, args.serial, wheel, wheelhouse, work) for n in sizes]
    base = results[0]
    print(f"fleet rollout, serial {args.serial}, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'hosts':>5}  {'boot s':>7}  {'first s':>8}  {'x first(1)':>10}  {'again s':>8}  {'x again(1)':>10}")
    for r in results:
        r["first_ratio"] = r["first_s"] / base["first_s"]
        r["again_ratio"] = r["again_s"] / base["again_s"]
        print(
            f"{r['hosts']:>5}  {r['boot_s']:>7.1f}  {r['first_s']:>8.1f}  {r['first_ratio']:>10.2f}  "
            f"{r['again_s']:>8.1f}  {r['again_ratio']:>10.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"serial": args.serial, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
