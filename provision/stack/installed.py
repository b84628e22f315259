"""What an environment holds, read from its metadata (``*.dist-info/METADATA``) without running its
interpreter: no ``import torch`` (seconds, and a CUDA initialisation) to learn a version."""

from __future__ import annotations

from pathlib import Path

from packaging.utils import canonicalize_name


def site_packages(env: Path) -> list[Path]:
    """The environment's site-packages directories (lib/pythonX.Y/site-packages, lib64 too)."""
    out: list[Path] = []
    for lib in ("lib", "lib64"):
        base = env / lib
        try:
            children = sorted(base.iterdir())
        except OSError:
            continue
        for child in children:
            sp = child / "site-packages"
            if child.name.startswith("python") and sp.is_dir() and sp.resolve() not in [p.resolve() for p in out]:
                out.append(sp)
    return out


def _headers(path: Path) -> tuple[str | None, str | None]:
    name = version = None
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            for line in fh:
                if not line.strip():
                    break
                key, _, value = line.partition(":")
                if key == "Name":
                    name = value.strip()
                elif key == "Version":
                    version = value.strip()
                if name and version:
                    break
    except OSError:
        return None, None
    return name, version


def installed_versions(env: Path) -> dict[str, str]:
    """Canonical distribution name → version of everything installed in the environment at ``env``
    ({} when there is none)."""
    out: dict[str, str] = {}
    for sp in site_packages(env):
        for info in sorted(sp.glob("*.dist-info")):
            name, version = _headers(info / "METADATA")
            if name and version:
                out.setdefault(str(canonicalize_name(name)), version)
    return out


def missing_pins(installed: dict[str, str], pins: dict[str, str]) -> dict[str, str | None]:
    """The pins the environment does not hold at their version: name → the version there (None: absent).
    A local version label (``2.7.1+cu128``) matches a pin without it."""
    out: dict[str, str | None] = {}
    for name, version in pins.items():
        have = installed.get(str(canonicalize_name(name)))
        if have is None or (have != version and have.split("+")[0] != version):
            out[name] = have
    return out
