"""What is installed in a Python environment — read from metadata and files, never by importing.

The one collector of Python-environment facts, standard library only, so the same source runs inside
another interpreter (``gpuprov doctor --python /opt/venv/bin/python``, ``gpuprov prune --python``): we
pass this file to it with ``python -I -c`` (:func:`provision.pyenvrun.run_collector`) and read back JSON. It must import
nothing outside the standard library and run on any Python 3.8+.

* :func:`collect` — doctor's view: names, versions, CUDA variants, torch's CUDA/HIP, llama.cpp's CUDA
  build, which distributions provide ``pynvml``. Importing torch to learn its version costs seconds;
  reading ``torch/version.py`` costs microseconds.
* :func:`collect_distributions` — prune's view: per distribution its ``Requires-Dist`` lines, the dotted
  module prefixes it installs (from ``RECORD``, depth-limited, namespace packages resolved below their
  shared top level), ``top_level.txt``, entry points and the bytes its ``RECORD`` lists; the PEP 508
  marker values of that interpreter (what ``packaging``'s ``default_environment()`` computes, computed
  here because ``packaging`` may not be installed there); ``stdlib_modules``,
  ``packages_distributions``, ``prefix``, ``interpreter`` and ``sys_path``.
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from pathlib import Path
from typing import Any

#: distributions that may install a top-level ``pynvml`` module (and overwrite each other)
PYNVML_DISTS = ("nvidia-ml-py", "pynvml", "nvidia-ml-py3")
#: how long another interpreter may take to list its packages (a big environment takes about a second)
COLLECT_TIMEOUT_S = 15
_LOCAL_CUDA = re.compile(r"^cu(\d{2,3})$")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _py_assign(text: str, name: str) -> str | None:
    """The string assigned to ``name`` in a generated version.py (``cuda: Optional[str] = '12.8'``)."""
    m = re.search(rf"^{name}\s*(?::[^=\n]*)?=\s*(?:'([^']*)'|\"([^\"]*)\"|None)", text, re.M)
    if not m:
        return None
    return m.group(1) if m.group(1) is not None else m.group(2)


def _elf_links_cuda(path: Path) -> bool:
    """Does this shared library name a CUDA runtime library among its strings (DT_NEEDED lives there)?"""
    try:
        with open(path, "rb") as fh:
            data = fh.read(64 * 1024 * 1024)
    except OSError:
        return False
    return b"libcudart.so" in data or b"libcublas.so" in data or b"libcuda.so" in data


def collect() -> dict[str, Any]:
    """Stdlib-only: the environment of the interpreter this runs in, as a JSON-ready dict."""
    from importlib import metadata

    out: dict[str, Any] = {
        "interpreter": sys.executable,
        "python_version": ".".join(str(p) for p in sys.version_info[:3]),
        "packages": {},
        "torch_cuda": None,
        "torch_hip": None,
        "llama_cpp_cuda": None,
        "pynvml_providers": [],
    }
    dists = {}
    for dist in metadata.distributions():
        name = dist.metadata.get("Name") if dist.metadata else None  # type: ignore[attr-defined]
        if not name:
            continue
        key = _normalise(name)
        if key in dists:  # first on sys.path wins, as for imports
            continue
        dists[key] = dist
        version = dist.version or ""
        local = version.partition("+")[2]
        m = _LOCAL_CUDA.match(local)
        out["packages"][key] = {
            "name": name,
            "version": version,
            "cuda_variant": f"cu{m.group(1)}" if m else None,
        }

    def locate(dist_name: str, rel: str) -> Path | None:
        found = dists.get(dist_name)
        if found is None:
            return None
        path = Path(str(found.locate_file(rel)))
        return path if path.exists() else None

    torch_version = locate("torch", "torch/version.py")
    if torch_version is not None:
        text = torch_version.read_text(encoding="utf-8", errors="replace")
        out["torch_cuda"] = _py_assign(text, "cuda")
        out["torch_hip"] = _py_assign(text, "hip")

    lib_dir = locate("llama-cpp-python", "llama_cpp/lib") or locate("llama-cpp-python", "llama_cpp")
    if lib_dir is not None:
        libs = [p for p in lib_dir.iterdir() if ".so" in p.name or p.suffix == ".dylib"]
        if any(p.name.startswith("libggml-cuda") for p in libs):
            out["llama_cpp_cuda"] = True
        else:
            out["llama_cpp_cuda"] = any(_elf_links_cuda(p) for p in libs if p.name.startswith(("libllama", "libggml")))

    for dist_name in PYNVML_DISTS:
        provider = dists.get(dist_name)
        if provider is None:
            continue
        files = provider.files or []
        if any(str(f) in ("pynvml.py", "pynvml/__init__.py") for f in files):
            out["pynvml_providers"].append(dist_name)
    return out


#: how deep module prefixes are recorded (``google.cloud.storage.blob`` → 4 parts): enough to tell
#: apart distributions sharing a namespace package, small enough to keep torch's list short
MODULE_DEPTH = 4
_MODULE_SUFFIXES = (".py", ".pyc", ".so", ".pyd", ".pyi")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


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
    found: set[str] = set()
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


def _direct_url(dist) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """PEP 610 ``direct_url.json``: where a distribution was installed from (``url``) and whether
    it is an editable install; empty for one installed from an index."""

    try:
        data = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return {}
    if not isinstance(data, dict) or not isinstance(data.get("url"), str):
        return {}
    dir_info = data.get("dir_info")
    return {"url": data["url"], "editable": bool(isinstance(dir_info, dict) and dir_info.get("editable"))}


def _marker_environment() -> dict[str, str]:
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


def _requires(dist, meta) -> list[str]:  # type: ignore[no-untyped-def]
    """``dist.requires`` from the already parsed ``meta`` (every ``dist.requires``, ``dist.version``
    and ``dist.metadata`` parses METADATA again): ``Requires-Dist``, else an egg's ``requires.txt``."""
    reqs = meta.get_all("Requires-Dist")
    if reqs is None and dist.read_text("requires.txt") is not None:
        reqs = dist.requires
    return list(reqs or [])


def _describe(dist, meta) -> dict[str, Any]:  # type: ignore[no-untyped-def]
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
    entry_points: dict[str, list[str]] = {}
    for ep in dist.entry_points:
        entry_points.setdefault(ep.group, []).append(ep.name)
    return {
        "name": meta["Name"],
        "version": meta["Version"] or "",
        "requires": _requires(dist, meta),
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


def _stdlib_from_files() -> set[str]:
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


def collect_distributions(paths: list[str] | None = None) -> dict[str, Any]:
    """What ``gpuprov prune`` reads: every distribution on ``paths`` (default ``sys.path``) described
    in full (modules from ``RECORD``, requirements, entry points, sizes) — first one of a name wins."""
    import gc
    from importlib import metadata

    kwargs: dict[str, Any] = {"path": paths} if paths is not None else {}
    dists = {}
    enabled = gc.isenabled()
    gc.disable()  # tens of thousands of short-lived objects (one per RECORD line), no cycles worth finding
    try:
        for dist in metadata.distributions(**kwargs):
            meta = dist.metadata  # parsed once here: _describe reads version and requirements from it
            name = meta["Name"] if meta else None
            if not name:
                continue
            key = _normalise(name)
            if key in dists:  # first on the path wins, as for imports
                continue
            dists[key] = _describe(dist, meta)
        pkg_dists = {}
        if paths is None and hasattr(metadata, "packages_distributions"):
            pkg_dists = {k: sorted(set(v)) for k, v in metadata.packages_distributions().items()}
    finally:
        if enabled:
            gc.enable()
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


def read_environment(python: str | None = None) -> Any:
    """The :class:`~provision.snapshot.PythonEnv` of ``python`` (default: this interpreter)."""
    from provision.snapshot import PackageInfo, PythonEnv

    if python is None or _same_interpreter(python):
        data = collect()
    else:
        data = _collect_in(python)
        if "error" in data:
            return PythonEnv(interpreter=python, error=data["error"])
    env = PythonEnv(
        interpreter=data["interpreter"],
        python_version=data["python_version"],
        torch_cuda=data["torch_cuda"],
        torch_hip=data["torch_hip"],
        llama_cpp_cuda=data["llama_cpp_cuda"],
        pynvml_providers=list(data["pynvml_providers"]),
    )
    env.packages = {k: PackageInfo(**v) for k, v in sorted(data["packages"].items())}
    return env


def _same_interpreter(python: str) -> bool:
    # not samefile(): every venv's bin/python links to the same base binary, with another sys.prefix
    return os.path.abspath(python) == os.path.abspath(sys.executable)


def _collect_in(python: str) -> dict[str, Any]:
    from provision.pyenvrun import run_collector  # not at the top: this file's source runs in the other Python

    return run_collector(python, "collect()", COLLECT_TIMEOUT_S)
