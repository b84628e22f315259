"""The one way gpuprov finds uv (prune --apply, build llama-cpp): the binary of the ``uv`` package
installed with gpuprov (``uv.find_uv_bin``), else ``uv`` on ``PATH``, else a ``python3 -m uv`` that
answers ``--version`` (how machines that get uv from PyPI into a system Python run it).

``scripts/lib/uv.sh`` is the shell side (CI bootstrap), before gpuprov is installed.
"""

from __future__ import annotations

import shutil
import subprocess


def find_uv() -> list[str] | None:
    """The command that runs uv (``[path]`` or ``[python3, "-m", "uv"]``), or None when there is none."""
    try:
        from uv import find_uv_bin

        return [find_uv_bin()]
    except (ImportError, FileNotFoundError):
        pass
    exe = shutil.which("uv")
    if exe:
        return [exe]
    python3 = shutil.which("python3")
    if python3:
        try:
            probe = subprocess.run([python3, "-m", "uv", "--version"], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError):
            return None
        if probe.returncode == 0:
            return [python3, "-m", "uv"]
    return None
