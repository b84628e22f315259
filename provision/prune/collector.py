"""What a Python environment has installed, read from its metadata — standard library only.

This module's source is sent to the target interpreter (``python -I -c``) when the project's
environment is not the one gpuprov runs in, so it must import nothing outside the standard library
and must run on any Python 3.8+. :func:`collect` returns a JSON-ready dict:

* ``distributions``: per installed distribution its name, version, ``Requires-Dist`` lines, the
  dotted module prefixes it installs (from ``RECORD``, depth-limited, namespace packages resolved
  below their shared top level), ``top_level.txt``, entry points, and the bytes its ``RECORD`` lists;
* ``marker_environment``: the PEP 508 marker values of that interpreter (what ``packaging``'s
  ``default_environment()`` computes, computed here because ``packaging`` may not be installed there);
* ``stdlib_modules``, ``packages_distributions`` (``importlib.metadata``'s own import-name map),
  ``prefix`` and ``interpreter``.
"""

from __future__ import annotations

import os
import platform
import re
import sys

#: how deep module prefixes are recorded (``google.cloud.storage.blob`` → 4 parts): enough to tell
#: apart distributions sharing a namespace package, small enough to keep torch's list short
MODULE_DEPTH = 4
_MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pyd", ".pyi")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _module_parts(rel: str) -> list[str] | None:
    """``google/protobuf/message.py`` → ``["google", "protobuf", "message"]``; None if not a module."""
    parts = rel.replace("\\", "/").split("/")
    if not parts or parts[0] in ("..", "") or any(p.endswith((".dist-info", ".egg-info", ".data")) for p in parts):
        return None
    if "__pycache__" in parts:
        return None
    leaf = parts[-1]
    if not leaf.endswith(_MODULE_SUFFIXES):
        return None
    stem = leaf.split(".", 1)[0]
    dirs = parts[:-1]
    if dirs and dirs[0].endswith("-stubs"):  # PEP 561 stub-only package: types for the module it names
        dirs = [dirs[0][: -len("-stubs")], *dirs[1:]]
    elif leaf.endswith(".pyi"):
        return None
    names = [*dirs] if stem == "__init__" else [*dirs, stem]
    if not names or not all(_IDENT.match(n) for n in names):
        return None
    return names


def _pth_roots(path: str) -> list[str]:
    """Directories an editable install's ``.pth`` file puts on ``sys.path``."""
    roots = []
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            for line in fh:
                line = line.strip()
                if line and not line.startswith(("#", "import ")) and os.path.isdir(line):
                    roots.append(line)
    except OSError:
        pass
    return roots


def _modules_under(root: str) -> set[str]:
    """Top-level packages (directories with ``__init__.py``) and modules directly in ``root``."""
    found = set()
    try:
        entries = os.listdir(root)
    except OSError:
        return found
    for entry in entries:
        full = os.path.join(root, entry)
        if os.path.isdir(full) and _IDENT.match(entry) and os.path.exists(os.path.join(full, "__init__.py")):
            found.add(entry)
        elif entry.endswith(".py") and _IDENT.match(entry[:-3]):
            found.add(entry[:-3])
    return found


def _direct_url(dist) -> dict:  # type: ignore[no-untyped-def]
    """PEP 610 ``direct_url.json``: where a distribution was installed from (``url``) and whether
    it is an editable install; empty for one installed from an index."""
    import json

    try:
        data = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return {}
    dir_info = data.get("dir_info")
    return {"url": data["url"], "editable": bool(isinstance(dir_info, dict) and dir_info.get("editable"))}


def _marker_environment() -> dict:
    impl = sys.implementation
    version = f"{impl.version.major}.{impl.version.minor}.{impl.version.micro}"
    if impl.version.releaselevel != "final":
        version += impl.version.releaselevel[0] + str(impl.version.serial)
    return {
        "implementation_name": impl.name,
        "implementation_version": version,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "platform_python_implementation": platform.python_implementation(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    }


def _describe(dist) -> dict:  # type: ignore[no-untyped-def]
    meta = dist.metadata
    record_bytes = 0
    record_complete = True
    modules = set()
    editable_roots = []
    scripts = []
    shallow = []
    files = dist.files
    if files is not None:
        for f in files:
            rel = str(f)
            if f.size is not None:
                record_bytes += int(f.size)
            elif not rel.endswith(("RECORD", ".pyc")):
                record_complete = False
            if rel.startswith("..") and "/bin/" in rel.replace("\\", "/"):
                scripts.append(rel.replace("\\", "/").rsplit("/", 1)[-1])
            parts = _module_parts(rel)
            if parts is not None and rel.count("/") <= 1 and not rel.endswith(".pyc"):
                shallow.append(rel)
            if parts is not None:
                for depth in range(1, min(len(parts), MODULE_DEPTH) + 1):
                    modules.add(".".join(parts[:depth]))
            elif rel.endswith(".pth") and "/" not in rel and rel != "distutils-precedence.pth":
                for root in _pth_roots(str(f.locate())):
                    editable_roots.append(root)
                    modules.update(_modules_under(root))
    top_level = []
    text = dist.read_text("top_level.txt")
    if text:
        top_level = [t.strip().replace("/", ".") for t in text.splitlines() if t.strip()]
    direct_url = _direct_url(dist)
    entry_points = {}
    for ep in dist.entry_points:
        entry_points.setdefault(ep.group, []).append(ep.name)
    return {
        "name": meta["Name"],
        "version": dist.version or "",
        "requires": list(dist.requires or []),
        "provides_extras": list(meta.get_all("Provides-Extra") or []),
        "modules": sorted(modules),
        "top_level": top_level,
        "has_record": files is not None,
        "record_bytes": record_bytes if files is not None else None,
        "record_complete": record_complete,
        "file_count": len(files) if files is not None else None,
        "entry_points": entry_points,
        "editable_roots": editable_roots,
        "direct_url": direct_url,
        "scripts": sorted(set(scripts)),
        "shallow_module_files": sorted(set(shallow)),
        "location": str(dist.locate_file("")),
        "metadata_dir": str(getattr(dist, "_path", "") or ""),
    }


def _stdlib_from_files() -> set:
    """Python < 3.10 has no ``sys.stdlib_module_names``: list the standard library's directory."""
    import sysconfig

    names = set(sys.builtin_module_names)
    stdlib = sysconfig.get_paths().get("stdlib", "")
    for base in (stdlib, os.path.join(stdlib, "lib-dynload")):
        try:
            entries = os.listdir(base)
        except OSError:
            continue
        for entry in entries:
            name = entry.split(".", 1)[0]
            if _IDENT.match(name) and entry != "site-packages":
                names.add(name)
    return names


def collect(paths: list[str] | None = None) -> dict:
    """Describe every distribution on ``paths`` (default ``sys.path``) — first one of a name wins."""
    from importlib import metadata

    kwargs = {"path": paths} if paths is not None else {}
    dists = {}
    for dist in metadata.distributions(**kwargs):
        meta = dist.metadata
        name = meta["Name"] if meta else None
        if not name:
            continue
        key = _normalise(name)
        if key in dists:  # first on the path wins, as for imports
            continue
        dists[key] = _describe(dist)
    pkg_dists = {}
    if paths is None and hasattr(metadata, "packages_distributions"):
        pkg_dists = {k: sorted(set(v)) for k, v in metadata.packages_distributions().items()}
    stdlib = sorted(getattr(sys, "stdlib_module_names", ()) or _stdlib_from_files())
    return {
        "interpreter": sys.executable,
        "sys_path": [p for p in sys.path if p] if paths is None else list(paths),
        "prefix": sys.prefix,
        "python_version": ".".join(str(p) for p in sys.version_info[:3]),
        "marker_environment": _marker_environment(),
        "stdlib_modules": stdlib,
        "distributions": dists,
        "packages_distributions": pkg_dists,
    }
