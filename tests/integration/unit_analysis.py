"""Real ``systemd-analyze verify`` and ``systemd-analyze security --offline=true`` on rendered units.

Both run against a throw-away root: systemd's own units (copied from this machine, so verify finds
sysinit.target and friends), the rendered files, and an empty executable at every path an
``ExecStart=``/``ExecStartPre=`` names (verify checks that commands exist). Shared by the serving
tests; the fleet/Molecule work can use it on whatever it renders.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SYSTEM_UNIT_DIRS = (Path("/usr/lib/systemd/system"), Path("/lib/systemd/system"))
EXPOSURE = re.compile(r"Overall exposure level for (\S+): (\d+(?:\.\d+)?) (\w+)")


def available() -> bool:
    return shutil.which("systemd-analyze") is not None and any(d.is_dir() for d in SYSTEM_UNIT_DIRS)


@dataclass(frozen=True)
class Exposure:
    unit: str
    score: float
    verdict: str
    table: str


def analysis_root(root: Path, files: dict[str, str]) -> Path:
    """``root`` with systemd's units, ``files`` (path -> content) and stand-ins for their commands."""
    source = next(d for d in SYSTEM_UNIT_DIRS if d.is_dir())
    dest = root / "usr/lib/systemd/system"
    if not dest.exists():
        shutil.copytree(source.resolve(), dest, symlinks=True)
    for path, content in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        for line in content.splitlines():
            m = re.match(r"^Exec(?:Start|StartPre|StartPost|Stop)=[-@+!:]*(/\S+)", line)
            if m:
                exe = root / m.group(1).lstrip("/")
                if not exe.exists():
                    exe.parent.mkdir(parents=True, exist_ok=True)
                    exe.write_text("#!/bin/sh\n")
                    exe.chmod(0o755)
    return root


def verify(root: Path, unit_path: str) -> str:
    """Every message ``systemd-analyze verify`` prints for the unit (empty: clean), and its exit status."""
    proc = subprocess.run(
        ["systemd-analyze", "verify", f"--root={root}", str(root / unit_path.lstrip("/"))],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    out = (proc.stdout + proc.stderr).strip()
    return out if proc.returncode == 0 or out else f"exit {proc.returncode}"


def security(root: Path, unit: str) -> Exposure:
    proc = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", f"--root={root}", "--no-pager", unit],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    m = EXPOSURE.search(proc.stdout + proc.stderr)
    if m is None:
        raise AssertionError(f"systemd-analyze security {unit}: no exposure level in:\n{proc.stdout}{proc.stderr}")
    return Exposure(m.group(1), float(m.group(2)), m.group(3), proc.stdout)
