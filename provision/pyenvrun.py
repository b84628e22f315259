"""Running :mod:`provision.pyenv`'s collector inside another interpreter: that file's own source is
given to it with ``python -I -c`` (it imports only the standard library) and its JSON answer read
back. The collector runs in its own session, so a timeout or an early stop kills its whole process
group; every failure is one line (``{"error": ...}``), never a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from provision.console import printable

#: the collector's source (stdlib only: it runs as it is in the other interpreter)
COLLECTOR = Path(__file__).with_name("pyenv.py")


def run_collector(python: str, call: str, timeout_s: float) -> dict[str, Any]:
    """Run ``call`` (``"collect()"``, ``"collect_distributions()"``) of :mod:`provision.pyenv` inside ``python``;
    its JSON answer, or ``{"error": one line}`` (no such interpreter, a timeout with its process
    group killed, a failure, an answer that is not JSON)."""
    return RunningCollector(python, call).result(timeout_s)


class RunningCollector:
    """The collector started inside ``python`` (``call`` as for :func:`run_collector`) and left to run
    while the caller does other work; :meth:`result` waits for its answer, :meth:`cancel` (a no-op
    once answered) kills its process group when the answer is no longer wanted."""

    def __init__(self, python: str, call: str) -> None:
        self.python = python
        self.proc: subprocess.Popen[str] | None = None
        self.error: str | None = None
        source = COLLECTOR.read_text(encoding="utf-8")
        script = source + f"\nimport json as _j\nprint(_j.dumps({call}))\n"
        try:
            # its own session: on a timeout the whole group goes, also a child that holds the pipes open
            self.proc = subprocess.Popen(
                [python, "-I", "-c", script],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                start_new_session=True,
            )
        except FileNotFoundError:
            self.error = f"{python}: no such interpreter"
        except PermissionError:
            self.error = f"{python}: not executable"
        except (OSError, subprocess.SubprocessError) as exc:  # never str(exc): it holds the whole script
            self.error = f"{python}: cannot run: {getattr(exc, 'strerror', None) or type(exc).__name__}"

    def cancel(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # the whole group has already gone
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate()

    def result(self, timeout_s: float) -> dict[str, Any]:
        python, proc = self.python, self.proc
        if proc is None:
            return {"error": self.error or f"{python}: cannot run"}
        try:
            try:
                stdout, stderr = proc.communicate(timeout=timeout_s)
            except BaseException:  # the timeout, or Ctrl-C (the other session does not get it): stop them
                self.cancel()
                raise
        except subprocess.TimeoutExpired:
            return {
                "error": f"{python}: timed out after {timeout_s:g} s listing its packages (does it start? "
                f"try {python} -c pass)"
            }
        except (OSError, subprocess.SubprocessError) as exc:
            return {"error": f"{python}: cannot run: {getattr(exc, 'strerror', None) or type(exc).__name__}"}
        if proc.returncode != 0:
            last = (stderr.strip().splitlines() or ["no output"])[-1]
            return {"error": f"{python}: failed to report its packages: {printable(last[:300])}"}
        try:
            data = json.loads(stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            return {"error": f"{python}: did not answer with JSON (is it Python 3.8 or newer?)"}
        return data if isinstance(data, dict) else {"error": f"{python}: unexpected answer"}
