"""Running a planned build: exactly the command the plan prints (``--dry-run`` shows it), logged to a
file, with progress, and the failing step summarised when it fails."""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from provision.errors import UsageError
from provision.llama_build.buildplan import BuildError, BuildPlan

# -- running ---------------------------------------------------------------------------------------

_PROGRESS = re.compile(r"\[(\d+)/(\d+)\]")
_ERROR_LINE = re.compile(
    r"(CMake Error|error:|Error:|fatal error|nvcc fatal|FAILED:|ninja: build stopped|No such file|not found|"
    r"unsupported gpu architecture|killed|Killed)",
)
#: lines that match the above but are advice, not the failure (llama.cpp prints the ccache one on every build)
_NOISE_LINE = re.compile(r"ccache not found|Git repository not found|(?i:\bwarning\b)(?!.*\berror\b)")


@dataclass
class BuildResult:
    ok: bool
    returncode: int
    duration_s: float
    log_path: str
    #: the step that failed (configure, compile, link, install) and its most telling lines
    failed_step: str | None = None
    error_lines: list[str] = field(default_factory=list)


def uv_command() -> list[str]:
    """uv, found the one way gpuprov finds it (:mod:`provision.uvtool`)."""
    from provision.uvtool import find_uv

    found = find_uv()
    if found is None:
        raise BuildError("uv not found: install it (pip install uv)")
    return found


def summarize_failure(lines: list[str]) -> tuple[str, list[str]]:
    """From a build log: which step failed and its last meaningful error lines (not the whole log).

    A CMake error's message body (its next indented lines, e.g. the missing target) comes with it."""
    step = "install"
    text = "\n".join(lines)
    if "CMake Error" in text or "Configuring incomplete" in text:
        step = "configure (cmake)"
    elif "FAILED:" in text or "ninja: build stopped" in text:
        step = "compile/link"
    elif "No solution found" in text or "Failed to fetch" in text or "error: Failed to download" in text:
        step = "download"
    cleaned = [re.sub(r"^DEBUG ?", "", ln.rstrip()) for ln in lines]
    picked: list[str] = []
    for i, ln in enumerate(cleaned):
        if not _ERROR_LINE.search(ln) or _NOISE_LINE.search(ln):
            continue
        picked.append(ln.strip())
        if "CMake Error" in ln:
            body: list[str] = []
            for nxt in cleaned[i + 1 : i + 12]:
                if nxt.strip() and not nxt[:1].isspace():
                    break
                if nxt.strip():
                    body.append(nxt.strip())
                if len(body) == 3:
                    break
            picked += body
    seen: list[str] = []
    for ln in picked:
        short = ln[:300]
        if short not in seen:
            seen.append(short)
    return step, seen[-8:]


def check_log_path(log_path: Path) -> None:
    """UsageError (exit 2) when the build log cannot be written there; looks, creates nothing."""
    if log_path.is_dir():
        raise UsageError(f"cannot write the build log {log_path}: it is a directory (give a file name)")
    parent = log_path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write the build log {log_path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write the build log {log_path}: {parent} is not writable")


def run_build(
    plan: BuildPlan, log_path: Path, *, on_progress: Callable[[int, int, str], None] | None = None
) -> BuildResult:
    cmd = uv_command() + plan.command[1:]
    env = {**os.environ, **plan.env}
    check_log_path(log_path)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise UsageError(f"cannot write the build log {log_path}: {exc.strerror or exc}") from None
    start = time.monotonic()
    tail: list[str] = []
    with log:
        log.write(f"# {plan.shell()}\n")
        log.flush()
        try:
            proc = subprocess.Popen(
                cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace"
            )
        except OSError as exc:
            raise BuildError(f"cannot start {cmd[0]}: {exc}") from None
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            tail.append(line.rstrip("\n"))
            if len(tail) > 4000:
                del tail[:2000]
            m = _PROGRESS.search(line)
            if m and on_progress:
                on_progress(int(m.group(1)), int(m.group(2)), line)
        rc = proc.wait()
    duration = time.monotonic() - start
    if rc == 0:
        return BuildResult(True, 0, duration, str(log_path))
    step, lines = summarize_failure(tail)
    return BuildResult(False, rc, duration, str(log_path), step, lines)


def default_log_path() -> Path:
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local/state") / "gpuprov" / "builds"
    return base / f"llama-cpp-{time.strftime('%Y%m%d-%H%M%S')}.log"
