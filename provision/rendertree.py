"""``gpuprov render``: every file apply would write for a profile, as a tree under a directory instead of ``/``.

The files come from the same functions apply runs (:func:`provision.plan.make_plan` with a saved
snapshot; :func:`provision.serving.files.serving_files` without one), rendered by the one renderer, so a
rendered tree is byte for byte what Ansible writes — except the API key, which is a placeholder here
(apply makes a real one on the host and never shows it). Nothing outside the output directory is
touched, and no GPU is needed.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from provision.errors import UsageError
from provision.profiles.schema import Profile
from provision.snapshot import Snapshot


@dataclass(frozen=True)
class RenderedFile:
    path: str
    mode: str
    note: str
    content: str


@dataclass
class RenderResult:
    profile: str
    files: list[RenderedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: False without a snapshot: only the files that do not depend on the GPUs
    checked_against_host: bool = False

    def to_dict(self) -> dict[str, object]:
        return {
            "profile": self.profile,
            "checked_against_host": self.checked_against_host,
            "files": [{"path": f.path, "mode": f.mode, "note": f.note} for f in self.files],
            "notes": list(self.notes),
        }


def rendered_files(
    profile: Profile, *, python: str, snapshot: Snapshot | None = None, root: Path = Path("/"), force: bool = False
) -> RenderResult:
    """What apply would write. With ``snapshot`` (another host's, or this one's): the whole plan,
    refusals included; without: the files that need no GPU (server units, suspend settings)."""
    from provision import plan
    from provision.hoststate import gather_sections
    from provision.plantypes import FileTarget, HostState
    from provision.serving.files import placeholder_key_file, serving_files

    result = RenderResult(profile.name)
    if snapshot is not None:
        host = HostState(known=False, systemd_running=False, python=python, root=str(root))
        host = gather_sections(host, snapshot, profile)
        desired = plan.desired_state(snapshot, profile, host, force=force)
        targets = [*desired.files, *desired.serving_files]
        result.notes = [n for n in desired.notes if not n.startswith("systemd is not running")]
        result.checked_against_host = True
    else:
        targets = []
        if profile.suspend.preserve_video_memory:
            targets.append(plan.suspend_file(profile))
        if not profile.gpu.empty or profile.gpu.fallback_locked_clocks_mhz:
            result.notes.append(
                "GPU settings (and the boot unit that re-applies them) depend on the GPUs: give --from SNAPSHOT"
            )
    section = profile.sections.get("serving")
    files = serving_files(profile.name, section, python=python, root=root) if section else None
    if files is not None and snapshot is None:
        targets += [FileTarget(p, c, m, n) for p, c, m, n in files.files]
        result.notes.extend(files.notes)
    for t in targets:
        if t.content is not None:
            result.files.append(RenderedFile(t.path, t.mode, t.note, t.content))
    placeholder = placeholder_key_file(files) if files is not None else None
    if placeholder is not None:
        path, content = placeholder
        result.files.append(
            RenderedFile(path, "0600", f"API key placeholder: apply writes a real key ({path})", content)
        )
    return result


def live_system(out: Path) -> str | None:
    """Why ``out`` holds a live system — this machine's root, a running systemd's, one with /proc mounted —
    or None. A rendered tree is for inspection (placeholders, nothing recorded for revert): never over one."""
    try:
        real = out.resolve()
        here, top = real.stat(), Path("/").stat()
    except OSError:
        return None  # not there (yet): render makes it
    if (here.st_dev, here.st_ino) == (top.st_dev, top.st_ino):
        return "it is this machine's root directory"
    try:
        if (real / "run/systemd/system").is_dir():
            return "a running systemd's run/systemd/system is there"
        if (real / "etc/os-release").exists() and (real / "proc").is_dir() and any((real / "proc").iterdir()):
            return "it holds an installed system with /proc mounted"
    except OSError as exc:
        return f"it cannot be looked into ({exc.strerror or exc})"
    return None


def write_tree(result: RenderResult, out: Path) -> list[Path]:
    """Write the files under ``out`` as if it were ``/`` (atomically, with their modes)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: exists and is not a directory")
    why = live_system(out)
    if why is not None:
        raise UsageError(
            f"{out}: {why}: gpuprov render writes files for inspection (API keys as placeholders, nothing "
            "recorded for revert), never over a live system: give an empty directory; gpuprov apply changes a host"
        )
    written = []
    for f in result.files:
        target = out / f.path.lstrip("/")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(f.content)
            os.chmod(tmp, int(f.mode, 8))
            os.replace(tmp, target)
        except OSError as exc:
            raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
        written.append(target)
    return written
