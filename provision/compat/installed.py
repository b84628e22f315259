"""``compat check --python``: the verdict on what is really installed in another interpreter's environment.

The packages come from that interpreter's installed metadata, read by :mod:`provision.pyenv`'s stdlib-only
collector running inside it (:mod:`provision.pyenvrun`): ``torch/version.py`` is read as a file, nothing of
torch / vLLM / flashinfer is ever imported. The driver and GPUs come from the snapshot (this host's probe,
or a saved one), so the verdict is the one ``compat check`` gives for those versions on that host.

:func:`check_environment` is the library entry point (the serving-stack builder calls it on the
environment it has just installed); :func:`installed_target` is the :class:`~provision.compat.target.Target`
it checks, for callers that add what-if overrides first (the CLI).
"""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

from provision.compat.matrix import Matrix
from provision.compat.report import Report
from provision.compat.target import Target, target_from_snapshot
from provision.errors import UsageError
from provision.snapshot import PythonEnv, Snapshot


class InterpreterError(UsageError):
    """An interpreter whose installed packages cannot be read: no such file, a directory, not a Python
    (or one older than 3.8), one that does not start or does not answer in time. Exit code 2."""


def read_installed(python: str) -> PythonEnv:
    """What is installed in ``python``'s environment (names, versions, torch's CUDA build, llama.cpp's CUDA
    libraries), from metadata and files only, or :class:`InterpreterError` with one line saying why not."""
    from provision import pyenv
    from provision.console import printable, printable_copy

    path = Path(python)
    # the message is one line whatever the text: control characters shown, not sent; a long name cut
    name = printable(python if len(python) <= 200 else python[:200] + "…")
    try:
        if path.is_dir():
            inside = path / "bin" / "python"
            hint = f" (its interpreter: {printable(str(inside))})" if inside.is_file() else ""
            raise InterpreterError(f"{name}: is a directory, not a Python interpreter{hint}")
        if not path.exists():
            raise InterpreterError(f"{name}: no such file (give the path of a Python interpreter)")
    except ValueError:  # a NUL byte: no file can have that name
        raise InterpreterError(f"{name}: not a path (it holds a NUL byte)") from None
    except OSError as exc:  # a name too long, a directory that cannot be searched
        raise InterpreterError(f"{name}: cannot look at it ({exc.strerror or exc})") from None
    env: PythonEnv = pyenv.read_environment(python)
    if env.error is not None:
        raise InterpreterError(f"{printable(env.error)} — not a Python interpreter whose packages gpuprov can read")
    # names and versions from another environment reach a terminal: their control characters are shown, not sent
    shown: PythonEnv = printable_copy(env)
    return shown


def installed_target(env: PythonEnv, snapshot: Snapshot) -> Target:
    """The check's target: the driver and GPUs of ``snapshot``, the packages (and torch / llama.cpp builds)
    of ``env`` in place of the snapshot's own Python environment."""
    return target_from_snapshot(dataclasses.replace(snapshot, python=env))


def check_environment(
    python: str,
    snapshot: Snapshot,
    matrix: Matrix | None = None,
    *,
    today: datetime.date | None = None,
) -> Report:
    """``compat check``'s verdict on the set installed in ``python``'s environment against the GPUs and
    driver of ``snapshot`` (:func:`provision.probe.probe` with ``python_stack=False`` for this host).

    ``report.verdict`` is ``ok``, ``incompatible`` or ``unknown`` (a version the matrix does not cover, or
    no tracked package installed: never guessed compatible); ``report.interpreter`` names what was read.
    Raises :class:`InterpreterError` (one line) when ``python`` is no interpreter whose packages can be
    read. Never imports the packages it checks.
    """
    from provision.compat.verdict import check

    env = read_installed(python)
    report = check(installed_target(env, snapshot), matrix, today=today)
    return dataclasses.replace(report, interpreter=env.interpreter or python, python_version=env.python_version)
