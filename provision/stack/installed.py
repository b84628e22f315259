"""What an environment holds, read from its metadata (``*.dist-info/METADATA``) without running its
interpreter: no ``import torch`` (seconds, and a CUDA initialisation) to learn a version."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from packaging.utils import canonicalize_name

if TYPE_CHECKING:
    from provision.prune.installed import InstalledEnv


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


def _version_info(env: Path) -> str | None:
    """The interpreter version ``pyvenv.cfg`` records (uv and venv write ``version_info`` / ``version``)."""
    try:
        text = (env / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("version_info", "version") and value.strip()[:1].isdigit():
            return value.strip()
    return None


def dependency_env(env: Path) -> InstalledEnv:
    """The environment at ``env`` as :class:`provision.prune.graph.DependencyGraph` reads it — names, versions,
    ``Requires-Dist`` and ``Provides-Extra`` from each METADATA's headers, the markers evaluated for the
    environment's Python (``pyvenv.cfg``) on this machine — without starting its interpreter or reading RECORDs
    (what the stack's prune step needs, in a tenth of the time of prune's full collector)."""
    from email.parser import BytesHeaderParser

    from packaging.markers import default_environment

    from provision.prune.installed import InstalledDist, InstalledEnv

    markers = {k: str(v) for k, v in default_environment().items()}
    version = _version_info(env)
    if version:
        full = ".".join(version.split(".")[:3])
        markers.update(python_full_version=full, python_version=".".join(full.split(".")[:2]))
        markers["implementation_version"] = full
    parser = BytesHeaderParser()
    dists: dict[str, InstalledDist] = {}
    for sp in site_packages(env):
        for info in sorted(sp.glob("*.dist-info")):
            try:
                with (info / "METADATA").open("rb") as fh:
                    headers = parser.parse(fh)
            except OSError:
                continue
            name, dist_version = headers.get("Name"), headers.get("Version")
            if not name or not dist_version:
                continue
            key = str(canonicalize_name(str(name)))
            if key in dists:
                continue
            dists[key] = InstalledDist(
                name=str(name),
                key=key,
                version=str(dist_version),
                requires=[str(r) for r in headers.get_all("Requires-Dist") or []],
                provides_extras=[str(canonicalize_name(str(e))) for e in headers.get_all("Provides-Extra") or []],
                modules=[],
                top_level=[],
                has_record=True,
                record_bytes=None,
                entry_points={},
                location=str(sp),
                metadata_dir=str(info),
            )
    return InstalledEnv(
        interpreter=str(env / "bin/python"),
        prefix=str(env),
        python_version=markers["python_full_version"],
        marker_environment=markers,
        stdlib_modules=frozenset(),
        dists=dists,
    )
