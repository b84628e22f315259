"""Real systemd hosts for tests: a Debian rootfs booted with ``systemd-nspawn -b``, reached over SSH.

No container engine runs on these machines, but systemd-nspawn boots a real systemd (PID 1 of its own
PID namespace, sharing the host's network) to multi-user.target in seconds. This module is the one
place that knows how:

- :func:`base_rootfs` — ``debootstrap --variant=minbase`` of Debian bookworm with systemd, python3,
  dbus and openssh-server, from the mirror apt uses on this machine; built once and cached under
  ``$GPUPROV_TEST_CACHE/nspawn/`` (default ``~/.cache/gpuprov-tests``), completed by a marker file so an
  interrupted build is never reused.
- :class:`Machine` — one host: its own copy of the rootfs (``cp --reflink=auto -a``), sshd on its own
  loopback port with a throw-away key, booted in the background, :meth:`Machine.wait_ready` until
  ``systemctl is-system-running`` says running/degraded, commands over SSH (:meth:`Machine.ssh`),
  ``systemctl poweroff`` to end it, and a kill plus removal of the copy when anything fails.

It is written to be driven from pytest (the ``nspawn_machine`` fixture) and from the command line, so
that Molecule's create/destroy playbooks can reuse it::

    python -m tests.integration.nspawn create NAME --port 2201 --state-dir DIR   # prints JSON (host, port, key)
    python -m tests.integration.nspawn destroy NAME --state-dir DIR
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUITE = "bookworm"
#: libgomp1: the OpenMP runtime that CPU builds of llama.cpp link (the serving end-to-end test); g++: the
#: compiler a host's own llama-cpp-python build needs (molecule/default: the profile's stack section; cmake and
#: ninja come from PyPI into the build's isolated environment, so neither they nor make are installed here)
PACKAGES = ("systemd", "systemd-sysv", "python3", "dbus", "openssh-server", "libgomp1", "g++")
#: bumped when the rootfs recipe changes, so an old cache is not reused
RECIPE = 3
DEFAULT_MIRROR = "http://deb.debian.org/debian"


class NspawnError(RuntimeError):
    """A test host that could not be built, booted or reached."""


def cache_dir() -> Path:
    return Path(os.environ.get("GPUPROV_TEST_CACHE") or Path.home() / ".cache/gpuprov-tests")


def missing_tools() -> list[str]:
    """What this machine lacks to boot test hosts (Debian packages: debootstrap, systemd-container, openssh-client)."""
    need = ("debootstrap", "systemd-nspawn", "ssh", "ssh-keygen")
    out = [t for t in need if shutil.which(t) is None]
    if os.geteuid() != 0:
        out.append("root")
    return out


def apt_mirror(sources: Sequence[Path] = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))) -> str:
    """The Debian mirror apt uses here (deb822 ``URIs:`` or one-line ``deb URI SUITE``), for ``SUITE``."""
    files: list[Path] = []
    for s in sources:
        if s.is_dir():
            files.extend(sorted(s.glob("*.list")) + sorted(s.glob("*.sources")))
        elif s.is_file():
            files.append(s)
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and SUITE in suites.group(1).split():
                return uris.group(1).rstrip("/")
        for line in text.splitlines():
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line.strip())
            if m and m.group(2) == SUITE:
                return m.group(1).rstrip("/")
    return DEFAULT_MIRROR


def base_rootfs(*, log: Path | None = None) -> Path:
    """The cached Debian rootfs (built on first use, ~1 minute). Never booted itself: hosts boot copies."""
    base = cache_dir() / "nspawn" / f"{SUITE}-minbase-r{RECIPE}"
    rootfs, done = base / "rootfs", base / "complete"
    base.mkdir(parents=True, exist_ok=True)
    # one builder at a time (parallel test sessions, Molecule creating several hosts): the others wait
    with (base / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if done.exists() and (rootfs / "usr/lib/systemd/systemd").exists():
            return rootfs
        if rootfs.exists():
            shutil.rmtree(rootfs)
        log = log or base / "debootstrap.log"
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}", SUITE, str(rootfs), apt_mirror()]
        with log.open("w") as fh:
            proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, check=False)
        if proc.returncode != 0:
            inner = rootfs / "debootstrap/debootstrap.log"  # dpkg's own messages; kept before the removal
            if inner.exists():
                shutil.copy(inner, base / "debootstrap-inner.log")
            tail = log.read_text(errors="replace")[-2000:]
            shutil.rmtree(rootfs, ignore_errors=True)
            where = f"{log} and {base}/debootstrap-inner.log"
            raise NspawnError(f"debootstrap failed (exit {proc.returncode}), see {where}:\n{tail}")
        _prepare_base(rootfs)
        done.write_text(" ".join(cmd) + "\n")
    return rootfs


def _prepare_base(rootfs: Path) -> None:
    """What every test host needs, once: no getty on the console, sshd that does not wait for DNS."""
    for unit in ("console-getty.service", "getty@tty1.service", "systemd-timesyncd.service"):
        with contextlib.suppress(FileNotFoundError):
            (rootfs / "etc/systemd/system" / unit).unlink()
        (rootfs / "etc/systemd/system" / unit).symlink_to("/dev/null")
    # the image's host keys are replaced per host copy (Machine.prepare)
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Machine:
    """One booted test host. ``binds_ro``: host paths mounted read-only at the same path inside."""

    name: str
    workdir: Path
    port: int = 0
    binds_ro: list[str] = field(default_factory=list)
    boot_timeout_s: float = 120.0
    process: subprocess.Popen | None = None
    #: seconds from starting systemd-nspawn until systemd reported running/degraded
    boot_s: float | None = None

    @property
    def rootfs(self) -> Path:
        return self.workdir / "rootfs"

    @property
    def key(self) -> Path:
        return self.workdir / "id_ed25519"

    @property
    def log(self) -> Path:
        return self.workdir / "console.log"

    # -- build --------------------------------------------------------------------------------------

    def prepare(self) -> None:
        """Copy the base rootfs and configure sshd on this host's port with a fresh key."""
        if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9-]{0,62}", self.name):
            raise NspawnError(f"{self.name!r} is not a machine name (letters, digits, '-')")
        base = base_rootfs()
        self.port = self.port or free_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.rootfs.exists():
            shutil.rmtree(self.rootfs)
        subprocess.run(["cp", "--reflink=auto", "-a", str(base), str(self.rootfs)], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.key)], check=True)
        # each host its own host keys (Debian's sshd refuses to start without them)
        subprocess.run(["ssh-keygen", "-q", "-A", "-f", str(self.rootfs)], check=True)
        ssh = self.rootfs / "root/.ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh / "authorized_keys").write_text(self.key.with_suffix(".pub").read_text())
        (ssh / "authorized_keys").chmod(0o600)
        conf = self.rootfs / "etc/ssh/sshd_config.d/gpuprov-test.conf"
        conf.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nUseDNS no\nAcceptEnv GPUPROV_*\n"
        )
        (self.rootfs / "etc/hostname").write_text(self.name + "\n")
        hosts = self.rootfs / "etc/hosts"
        hosts.write_text(f"127.0.0.1 localhost\n127.0.1.1 {self.name}\n")

    def write(self, path: str, content: str, mode: int = 0o644) -> Path:
        """Put a file into the host's rootfs (before boot, or through the shared filesystem after)."""
        target = self.rootfs / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        target.chmod(mode)
        return target

    # -- run ----------------------------------------------------------------------------------------

    def boot(self) -> None:
        cmd = [
            "systemd-nspawn",
            "--register=no",
            "--keep-unit",
            "-D",
            str(self.rootfs),
            "-M",
            self.name,
            "--console=read-only",
        ]
        for path in self.binds_ro:
            if not Path(path).exists():
                raise NspawnError(f"cannot bind {path} into {self.name}: no such path here")
            # the mount point must exist inside for a read-only bind
            (self.rootfs / path.lstrip("/")).mkdir(parents=True, exist_ok=True) if Path(path).is_dir() else None
            cmd.append(f"--bind-ro={path}")
        cmd.append("-b")
        started = time.monotonic()
        with self.log.open("wb") as fh:
            self.process = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self.wait_ready()
        self.boot_s = time.monotonic() - started

    def ssh_command(self, command: str) -> list[str]:
        return [
            "ssh",
            "-i",
            str(self.key),
            "-p",
            str(self.port),
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "ConnectTimeout=5",
            "root@127.0.0.1",
            command,
        ]

    def ssh(self, command: str, *, timeout_s: float = 300, check: bool = True) -> subprocess.CompletedProcess:
        """Run a shell command line on the host as root. ``check``: a non-zero exit raises NspawnError."""
        try:
            proc = subprocess.run(
                self.ssh_command(command), capture_output=True, text=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired as exc:
            raise NspawnError(f"{self.name}: {command!r} ran past {timeout_s:g} s") from exc
        if check and proc.returncode != 0:
            raise NspawnError(f"{self.name}: {command!r} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
        return proc

    def wait_ready(self) -> str:
        """Until sshd answers and systemd reports running or degraded (what boot reached); the state."""
        deadline = time.monotonic() + self.boot_timeout_s
        last = ""
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise NspawnError(f"{self.name}: systemd-nspawn exited {self.process.returncode}:\n{self.console()}")
            proc = subprocess.run(
                self.ssh_command("systemctl is-system-running --wait"),
                capture_output=True,
                text=True,
                timeout=self.boot_timeout_s,
                check=False,
            )
            last = (proc.stdout.strip() or proc.stderr.strip())[-300:]
            if proc.stdout.strip() in ("running", "degraded"):
                return proc.stdout.strip()
            time.sleep(0.5)
        raise NspawnError(f"{self.name}: not up after {self.boot_timeout_s:g} s (last: {last!r}):\n{self.console()}")

    def console(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return ""

    def poweroff(self, timeout_s: float = 60) -> None:
        """``systemctl poweroff`` over SSH, then wait for systemd-nspawn to exit; killed if it does not."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(subprocess.TimeoutExpired, OSError):
            subprocess.run(self.ssh_command("systemctl poweroff"), capture_output=True, timeout=15, check=False)
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)

    def remove(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)


#: where :func:`install_gpuprov` puts gpuprov in a host: a system path, the gpuprov_host role's default
GPUPROV_DIR = "/opt/gpuprov"


def build_wheel(project: Path, out: Path, uv: str) -> Path:
    """gpuprov's wheel built from a checkout (``uv build --wheel``): what a host installs."""
    out.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(
        [uv, "build", "--quiet", "--wheel", "--out-dir", str(out), str(project)],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    wheels = sorted(out.glob("gpuprov-*.whl"))
    if proc.returncode != 0 or len(wheels) != 1:
        raise NspawnError(f"uv build of {project} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return wheels[0]


def install_gpuprov(machine: Machine, *, wheel: Path, wheelhouse: Path, uv: str, extras: Sequence[str] = ()) -> str:
    """gpuprov installed into a booted host the way the gpuprov_host role does it: uv, the wheel and the
    dependency wheels copied in, a virtualenv from the host's python3, an offline install. The host then
    runs gpuprov from ``/opt/gpuprov/venv`` whatever the checkout's path here. ``extras`` (e.g. ansible,
    for a host that runs ``gpuprov apply`` itself) come from the same wheelhouse. Returns its interpreter."""
    base = machine.rootfs / GPUPROV_DIR.lstrip("/")
    for sub in ("bin", "wheels", "wheelhouse"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    shutil.copy(uv, base / "bin/uv")
    shutil.copy(wheel, base / "wheels" / wheel.name)
    for whl in wheelhouse.glob("*.whl"):
        shutil.copy(whl, base / "wheelhouse" / whl.name)
    venv = f"{GPUPROV_DIR}/venv"
    version = wheel.name.split("-")[1]
    requirement = f"gpuprov[{','.join(extras)}]=={version}" if extras else f"gpuprov=={version}"
    machine.ssh(
        f"{GPUPROV_DIR}/bin/uv venv --quiet --python /usr/bin/python3 --no-python-downloads {venv} && "
        f"{GPUPROV_DIR}/bin/uv pip install --quiet --python {venv}/bin/python --no-python-downloads --no-index "
        f"--find-links {GPUPROV_DIR}/wheelhouse --find-links {GPUPROV_DIR}/wheels '{requirement}'",
        timeout_s=600,
    )
    return f"{venv}/bin/python"


@contextlib.contextmanager
def booted(
    name: str, workdir: Path, *, binds_ro: Sequence[str] = (), keep: bool = False, setup: object = None
) -> Iterator[Machine]:
    """A booted host for the duration of the block; powered off and removed afterwards, also on failure.
    ``setup(machine)`` runs after the rootfs is prepared and before boot."""
    machine = Machine(name, workdir, binds_ro=list(binds_ro))
    try:
        machine.prepare()
        if callable(setup):
            setup(machine)
        machine.boot()
        yield machine
    finally:
        machine.poweroff()
        machine.kill()
        if not keep:
            machine.remove()


# -- command line (for Molecule's create/destroy playbooks) ------------------------------------------


def _state_file(state_dir: Path, name: str) -> Path:
    return state_dir / f"{name}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.nspawn")
    sub = parser.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("create", help="build (cached), copy and boot a host; print its connection as JSON")
    c.add_argument("name")
    c.add_argument("--state-dir", type=Path, required=True)
    c.add_argument("--port", type=int, default=0)
    c.add_argument("--bind-ro", action="append", default=[])
    d = sub.add_parser("destroy", help="power a host off and remove its copy")
    d.add_argument("name")
    d.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print(f"cannot boot test hosts here: missing {', '.join(missing)}", file=sys.stderr)
        return 2
    if args.cmd == "create":
        m = Machine(args.name, args.state_dir / args.name, port=args.port, binds_ro=args.bind_ro)
        try:
            m.prepare()
            # detached from this process: the daemon outlives `create`
            m.boot()
        except Exception:
            m.kill()
            m.remove()
            raise
        info = {
            "name": m.name,
            "host": "127.0.0.1",
            "port": m.port,
            "key": str(m.key),
            "user": "root",
            "pid": m.process.pid if m.process else None,
            "workdir": str(m.workdir),
            "boot_s": m.boot_s,
        }
        _state_file(args.state_dir, m.name).write_text(json.dumps(info))
        print(json.dumps(info))
        return 0
    state = _state_file(args.state_dir, args.name)
    if not state.exists():
        return 0
    info = json.loads(state.read_text())
    m = Machine(args.name, Path(info["workdir"]), port=int(info["port"]))
    with contextlib.suppress(subprocess.TimeoutExpired, OSError):
        subprocess.run(m.ssh_command("systemctl poweroff"), capture_output=True, timeout=15, check=False)
    pid = info.get("pid")
    deadline = time.monotonic() + 60
    while pid and time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.5)
    if pid and Path(f"/proc/{pid}").exists():
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGKILL)
    m.remove()
    state.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
