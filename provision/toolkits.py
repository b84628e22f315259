"""CUDA toolkits on this host: every ``nvcc`` reachable through PATH, CUDA_HOME/CUDA_PATH or /usr/local/cuda*.

The version comes from the toolkit's ``version.json`` (CUDA 11.1+) when it is there — a file read —
and from ``nvcc --version`` otherwise.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

from provision.snapshot import CudaToolkit

_NVCC_RELEASE = re.compile(r"release (\d+\.\d+), V(\d+\.\d+\.\d+)")


def parse_nvcc_version(text: str) -> str | None:
    """`nvcc --version` output → "12.4.131" (or "12.4" when only the release is printed)."""
    m = _NVCC_RELEASE.search(text)
    if m:
        return m.group(2)
    m = re.search(r"release (\d+\.\d+)", text)
    return m.group(1) if m else None


def _version_from_json(toolkit_root: Path) -> str | None:
    try:
        data = json.loads((toolkit_root / "version.json").read_text())
    except (OSError, ValueError):
        return None
    for key in ("cuda_nvcc", "cuda"):
        entry = data.get(key) if isinstance(data, dict) else None
        version = entry.get("version") if isinstance(entry, dict) else None
        if isinstance(version, str):
            return version
    return None


def nvcc_version(nvcc: Path) -> str | None:
    version = _version_from_json(nvcc.parent.parent)
    if version:
        return version
    try:
        out = subprocess.run([str(nvcc), "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvcc_version(out.stdout)


def find_toolkits(environ: dict[str, str], *, root: Path = Path("/")) -> list[CudaToolkit]:
    candidates: list[tuple[Path, str]] = []
    for d in environ.get("PATH", "").split(os.pathsep):
        if d:
            candidates.append((root / d.lstrip("/") / "nvcc", "PATH"))
    for var in ("CUDA_HOME", "CUDA_PATH"):
        if environ.get(var):
            candidates.append((root / environ[var].lstrip("/") / "bin" / "nvcc", var))
    local = root / "usr/local"
    try:
        for name in sorted(os.listdir(local)):
            if name == "cuda" or name.startswith("cuda-"):
                candidates.append((local / name / "bin" / "nvcc", f"/usr/local/{name}"))
    except OSError:
        pass

    by_real: dict[str, CudaToolkit] = {}
    for path, via in candidates:
        if not (path.is_file() and os.access(path, os.X_OK)):
            continue
        real = str(path.resolve())
        shown = "/" + str(path.relative_to(root)) if root != Path("/") else str(path)
        if real not in by_real:
            by_real[real] = CudaToolkit(nvcc=shown, version=nvcc_version(path), found_via=[via])
        elif via not in by_real[real].found_via:
            by_real[real].found_via.append(via)
    return list(by_real.values())
