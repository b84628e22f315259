"""Molecule's create/destroy for gpuprov's scenarios: several systemd-nspawn hosts at once.

The hosts themselves are :mod:`tests.integration.nspawn`'s (one Debian rootfs, cached; a copy per host
booted with ``systemd-nspawn -b``; sshd on its own loopback port). This adds what Molecule's delegated
driver needs on top of that module's one-host command line:

- the cached rootfs is built once before any host is copied from it (hosts booted in parallel would
  otherwise race to build it);
- every host of a scenario is copied and booted in parallel (a fleet of 8 boots in about the time of 1);
- Molecule's instance config (``instance``, ``address``, ``user``, ``port``, ``identity_file``) is written
  for the inventory Molecule makes.

    python -m tests.integration.molecule_hosts create --state-dir DIR --instance-config FILE NAME...
    python -m tests.integration.molecule_hosts destroy --state-dir DIR [--instance-config FILE] NAME...

``destroy`` powers hosts off and removes their copies (also of hosts that failed to boot); the state
files are the ones ``python -m tests.integration.nspawn destroy`` reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from tests.integration import nspawn


def _boot(name: str, state_dir: Path) -> dict:
    machine = nspawn.Machine(name, state_dir / name)
    try:
        machine.prepare()
        machine.boot()
    except BaseException:
        machine.kill()
        machine.remove()
        raise
    info = {
        "name": name,
        "host": "127.0.0.1",
        "port": machine.port,
        "key": str(machine.key),
        "user": "root",
        "pid": machine.process.pid if machine.process else None,
        "workdir": str(machine.workdir),
        "boot_s": machine.boot_s,
    }
    (state_dir / f"{name}.json").write_text(json.dumps(info))
    return info


def create(names: list[str], state_dir: Path, instance_config: Path) -> list[dict]:
    state_dir.mkdir(parents=True, exist_ok=True)
    nspawn.base_rootfs()
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        futures = {name: pool.submit(_boot, name, state_dir) for name in names}
    errors = [f"{name}: {fut.exception()}" for name, fut in futures.items() if fut.exception() is not None]
    infos = [fut.result() for fut in futures.values() if fut.exception() is None]
    if errors:
        destroy([i["name"] for i in infos], state_dir)
        raise nspawn.NspawnError("cannot boot the test hosts:\n" + "\n".join(errors))
    instance_config.write_text(
        yaml.safe_dump(
            [
                {
                    "instance": i["name"],
                    "address": i["host"],
                    "user": i["user"],
                    "port": i["port"],
                    "identity_file": i["key"],
                }
                for i in infos
            ]
        )
    )
    return infos


PROJECT = Path(__file__).resolve().parents[2]


def wheelhouse(python_version: str, project: Path = PROJECT) -> Path:
    """Dependency wheels for test hosts (``scripts/wheelhouse --deps-only``), cached per uv.lock and Python
    version under the test cache: the path molecule/fleet's inventory computes the same way."""
    key = hashlib.sha1((project / "uv.lock").read_bytes()).hexdigest()[:16]
    # "-all": every extra's wheels too (a host's own `gpuprov apply` needs gpuprov[ansible])
    path = nspawn.cache_dir() / "wheelhouse" / f"{key}-py{python_version}-all"
    if not (path / "requirements.txt").exists():
        bindir = Path(sys.executable).parent
        env = {**os.environ, "PATH": f"{bindir}:{os.environ.get('PATH', '')}"}
        cmd = ["bash", str(project / "scripts/wheelhouse"), "--deps-only", str(path), python_version]
        subprocess.run(cmd, env=env, check=True, timeout=900)
    return path


def destroy(names: list[str], state_dir: Path, instance_config: Path | None = None) -> None:
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        list(pool.map(lambda n: nspawn.main(["destroy", n, "--state-dir", str(state_dir)]), names))
    if instance_config is not None and instance_config.exists():
        instance_config.write_text("[]\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.molecule_hosts")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("create", "destroy"):
        p = sub.add_parser(cmd)
        p.add_argument("names", nargs="+", metavar="NAME")
        p.add_argument("--state-dir", type=Path, required=True)
        p.add_argument("--instance-config", type=Path, required=cmd == "create")
    args = parser.parse_args(argv)
    missing = nspawn.missing_tools()
    if missing and args.cmd == "create":
        print(f"cannot boot test hosts here: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.cmd == "create":
        try:
            infos = create(args.names, args.state_dir, args.instance_config)
        except nspawn.NspawnError as exc:
            print(exc, file=sys.stderr)
            return 1
        print(json.dumps({"hosts": infos}))
    else:
        destroy(args.names, args.state_dir, args.instance_config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
