"""What is installed in a Python environment — read from metadata and files, never by importing.

:func:`collect` uses only the standard library, so the same source runs inside another interpreter
(``gpuprov doctor --python /opt/venv/bin/python``): we pass this file to it with ``python -I -c``
and read back JSON. Importing torch to learn its version costs seconds; reading
``torch/version.py`` costs microseconds.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
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
        name = dist.metadata.get("Name") if dist.metadata else None
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
        dist = dists.get(dist_name)
        if dist is None:
            return None
        path = Path(str(dist.locate_file(rel)))
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
            out["llama_cpp_cuda"] = any(
                _elf_links_cuda(p) for p in libs if p.name.startswith(("libllama", "libggml"))
            )

    for dist_name in PYNVML_DISTS:
        dist = dists.get(dist_name)
        if dist is None:
            continue
        files = dist.files or []
        if any(str(f) in ("pynvml.py", "pynvml/__init__.py") for f in files):
            out["pynvml_providers"].append(dist_name)
    return out


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
    source = Path(__file__).read_text(encoding="utf-8")
    script = source + "\nimport json as _j\nprint(_j.dumps(collect()))\n"
    try:
        # its own session: on a timeout the whole group goes, also a child that holds the pipes open
        proc = subprocess.Popen(
            [python, "-I", "-c", script],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=COLLECT_TIMEOUT_S)
        except BaseException:  # the timeout, or Ctrl-C (the other session does not get it): stop them
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    except FileNotFoundError:
        return {"error": f"{python}: no such interpreter"}
    except PermissionError:
        return {"error": f"{python}: not executable"}
    except subprocess.TimeoutExpired:
        return {
            "error": f"{python}: timed out after {COLLECT_TIMEOUT_S} s listing its packages (does it start? "
            f"try {python} -c pass)"
        }
    except (OSError, subprocess.SubprocessError) as exc:  # never str(exc): it holds the whole script
        return {"error": f"{python}: cannot run: {getattr(exc, 'strerror', None) or type(exc).__name__}"}
    if proc.returncode != 0:
        from provision.console import printable  # not at the top: this file's source runs in the other Python

        last = (stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"{python}: failed to report its packages: {printable(last[:300])}"}
    try:
        data = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": f"{python}: did not answer with JSON (is it Python 3.8 or newer?)"}
    return data if isinstance(data, dict) else {"error": f"{python}: unexpected answer"}
