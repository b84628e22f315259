"""Which interpreter's environment ``gpuprov prune`` reads, and why that one — decided before
anything else is loaded, so a re-run served from the report cache (:mod:`~provision.prune.reportcache`)
imports nothing heavier than this."""

from __future__ import annotations

import os
from pathlib import Path

from provision.errors import UsageError


def choose_interpreter(project: Path, python: str | None) -> tuple[str | None, str]:
    """The interpreter whose environment is the project's, and why it was chosen: ``--python``, else
    the project's ``.venv``, else the active virtual environment (``$VIRTUAL_ENV``), else gpuprov's own.

    ``None`` means gpuprov's own (read in-process)."""
    if python is not None:
        path = Path(python)
        if not path.exists():
            raise UsageError(f"--python {python}: no such file")
        return python, "from --python"
    venv_python = project / ".venv" / "bin" / "python"
    if venv_python.exists():
        return str(venv_python), "the project's .venv"
    active = os.environ.get("VIRTUAL_ENV", "")
    if active:
        active_python = Path(active) / "bin" / "python"
        if not active_python.exists():
            raise UsageError(f"$VIRTUAL_ENV={active}: it has no bin/python; deactivate it or pass --python")
        return str(active_python), "the active virtual environment ($VIRTUAL_ENV)"
    return None, (
        "gpuprov's own interpreter: the project has no .venv and no virtual environment is active; "
        "pass --python to choose"
    )
