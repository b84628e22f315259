"""A minimal in-tree PEP 517 / PEP 660 build backend, so tests can install a packaged project
(``[build-system]``) into a real virtualenv with uv and no network: ``requires = []``,
``build-backend = "gpuprov_test_backend"``, ``backend-path = ["_backend"]``.

Standard library only (it runs in uv's empty build environment). ``METADATA`` is built from
``[project]`` (name, version, dependencies, optional-dependencies), the way every PEP 621 backend
does; packages are the root directories holding ``__init__.py``. :func:`write_wheel` is also how the
tests write the wheels of the project's dependencies (one writer of the wheel format).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import tomllib
import zipfile
from pathlib import Path

WHEEL_TAG = "py3-none-any"


def _dist_name(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name)


def write_wheel(
    directory: str | os.PathLike[str],
    name: str,
    version: str,
    requires: list[str] | None = None,
    files: dict[str, str] | None = None,
    provides_extras: list[str] | None = None,
) -> str:
    """Write ``{name}-{version}-py3-none-any.whl`` into ``directory``; returns its file name."""
    stem = f"{_dist_name(name)}-{version}"
    info = f"{stem}.dist-info"
    meta = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    meta += [f"Provides-Extra: {e}" for e in provides_extras or []]
    meta += [f"Requires-Dist: {r}" for r in requires or []]
    contents = dict(files or {})
    contents[f"{info}/METADATA"] = "\n".join(meta) + "\n\n"
    contents[f"{info}/WHEEL"] = (
        f"Wheel-Version: 1.0\nGenerator: gpuprov-tests\nRoot-Is-Purelib: true\nTag: {WHEEL_TAG}\n"
    )
    record = []
    for rel, text in contents.items():
        data = text.encode("utf-8")
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{rel},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    contents[f"{info}/RECORD"] = "\n".join(record) + "\n"
    filename = f"{stem}-{WHEEL_TAG}.whl"
    with zipfile.ZipFile(Path(directory) / filename, "w") as zf:
        for rel, text in contents.items():
            zf.writestr(rel, text)
    return filename


def _project() -> dict:
    return tomllib.loads(Path("pyproject.toml").read_text(encoding="utf-8"))["project"]


def _requires(project: dict) -> tuple[list[str], list[str]]:
    requires = list(project.get("dependencies", []))
    extras = []
    for extra, items in project.get("optional-dependencies", {}).items():
        extras.append(extra)
        for item in items:
            head, sep, marker = item.partition(";")
            cond = f'({marker.strip()}) and extra == "{extra}"' if sep else f'extra == "{extra}"'
            requires.append(f"{head.strip()} ; {cond}")
    return requires, extras


def _build(wheel_directory: str, editable: bool) -> str:
    project = _project()
    requires, extras = _requires(project)
    root = Path.cwd()
    name = project["name"]
    files: dict[str, str] = {}
    if editable:
        files[f"_{_dist_name(name)}.pth"] = str(root) + "\n"
    else:
        for pkg in sorted(p for p in root.iterdir() if (p / "__init__.py").is_file()):
            for path in sorted(pkg.rglob("*.py")):
                files[str(path.relative_to(root))] = path.read_text(encoding="utf-8")
    return write_wheel(wheel_directory, name, project["version"], requires, files, extras)


def build_wheel(
    wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None
) -> str:
    return _build(wheel_directory, editable=False)


def build_editable(
    wheel_directory: str, config_settings: dict | None = None, metadata_directory: str | None = None
) -> str:
    return _build(wheel_directory, editable=True)


def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    return []


def get_requires_for_build_editable(config_settings: dict | None = None) -> list[str]:
    return []
