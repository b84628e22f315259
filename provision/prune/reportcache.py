"""The whole ``prune`` report of an unchanged project, kept between runs: a re-run whose project tree,
target environment, arguments and gpuprov code are what the saved report was made from prints it
again (as :meth:`~provision.prune.analysis.PruneReport.to_dict` gave it, the data both the table and
``--json`` are drawn from) instead of merging the per-file scan, loading the environment's metadata,
reading the declarations and deciding again — and without importing any of that code.

What the report depends on, and so what must be unchanged for the saved one to be served:

* the project tree: every file's path, size and ``mtime_ns``, and every directory's name, walked as
  the scans walk it but wider (nested projects, ``build/``, ``*.egg-info`` included); only what no part
  of prune reads is left out: hidden directories other than the CI ones the mentions read, caches
  (``__pycache__``, ``node_modules``...) and virtual environments; requirements files included from
  outside the tree (``-r ../base.txt``) are listed by their absolute paths;
* the target interpreter's environment: the interpreter file, its ``sys.path`` directories and editable
  roots keep their ``mtime_ns`` (the fingerprint of :class:`~provision.prune.installed.PendingEnvironment`);
* the arguments: interpreter, why it was chosen, ``--ignore``;
* gpuprov: its version, the source of every prune module and of the metadata collector, and the
  ``packaging`` version (it parses the requirements).

The text table is kept too, as the characters it was printed as, under
:func:`provision.console.output_key` (rich's files, the terminal, its size and the environment rich
reads): a text re-run under the same key writes them again without importing rich (the last
:data:`KEPT_RENDERINGS` keys are kept).

Only reports of another interpreter's environment are kept (gpuprov's own has no fingerprint), and
only for runs that change nothing (``--apply`` always decides afresh). Stored next to the scan cache
(:mod:`~provision.prune.scancache`) as ``report-<hash of the project path>.json``; unreadable or
out of date is a miss, never an error.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

from provision import __version__
from provision.prune.scancache import write_cache_file
from provision.prune.sourcetree import HIDDEN_KEPT, SKIP_DIRS, is_environment_dir

_PACKAGE = Path(__file__).parent

#: how many renderings of one report (terminal widths, a pipe, colour or not) are kept
KEPT_RENDERINGS = 4


def code_key() -> list[Any]:
    """gpuprov's version, ``packaging``'s, and the path, size and ``mtime_ns`` of every prune module
    and of the collector (stat, not a hash of their text: a served re-run reads and hashes nothing)."""
    import packaging

    sources = [*sorted(_PACKAGE.glob("*.py")), _PACKAGE.parent / "pyenv.py", _PACKAGE.parent / "pyenvrun.py"]
    return [__version__, packaging.__version__, *_file_stats([str(path) for path in sources])]


def tree_listing(root: Path) -> list[list[Any]]:
    """Every directory (``[rel + "/"]``) and file (``[rel, size, mtime_ns]``; size None when it cannot
    be read) under ``root`` that any part of prune could read, in walk order."""
    top = os.fspath(root)
    out: list[list[Any]] = []
    for dirpath, dirnames, filenames in os.walk(top):
        rel_dir = os.path.relpath(dirpath, top)
        prefix = "" if rel_dir == "." else rel_dir + os.sep
        dirnames.sort()
        out += [[prefix + d + "/"] for d in dirnames]
        dirnames[:] = [
            d
            for d in dirnames
            if (d in HIDDEN_KEPT or not d.startswith("."))
            and d not in SKIP_DIRS
            and not is_environment_dir(os.path.join(dirpath, d))
        ]
        for name in sorted(filenames):
            try:
                st = os.stat(os.path.join(dirpath, name))
                out.append([prefix + name, st.st_size, st.st_mtime_ns])
            except OSError:
                out.append([prefix + name, None, None])
    return out


def _file_stats(paths: list[str]) -> list[list[Any]]:
    """``[path, size, mtime_ns]`` of each path (None, None when it cannot be read)."""
    out: list[list[Any]] = []
    for path in paths:
        try:
            st = os.stat(path)
            out.append([path, st.st_size, st.st_mtime_ns])
        except OSError:
            out.append([path, None, None])
    return out


def fingerprint_holds(fingerprint: list[list[Any]]) -> bool:
    """Whether every path of an environment fingerprint (``[path, mtime_ns]``) still has that mtime."""
    for path, mtime_ns in fingerprint:
        try:
            if os.stat(path).st_mtime_ns != mtime_ns:
                return False
        except OSError:
            if mtime_ns is not None:
                return False
    return True


class ReportCache:
    """The saved report of one project for one set of arguments: :meth:`load` before analysing,
    :meth:`save` after (with the listing taken before the analysis, so an edit made while it ran
    is a miss next time, not a stale answer)."""

    def __init__(self, directory: Path, project: Path, interpreter: str, why: str, ignore: tuple[str, ...]) -> None:
        root = os.path.realpath(project)
        raw = root.encode()  # the name only spreads projects over files: "root" inside is what is checked
        self.path = directory / f"report-{zlib.crc32(raw):08x}{zlib.adler32(raw):08x}.json"
        self.project = project
        self.head = {"key": code_key(), "root": root, "args": [interpreter, why, sorted(ignore)]}
        self.listing = tree_listing(project)
        self._saved: dict[str, Any] | None = None  # the entry as last read or written

    def load(self) -> dict[str, Any] | None:
        """The saved report's data, or None (a miss)."""
        try:
            saved = json.loads(self.path.read_text(encoding="utf-8"))
            if not isinstance(saved, dict) or any(saved.get(k) != v for k, v in self.head.items()):
                return None
            if saved["listing"] != self.listing or not fingerprint_holds(saved["env"]):
                return None
            outside = saved["outside"]
            if _file_stats([path for path, _, _ in outside]) != outside:
                return None
            report = saved["report"]
            if not isinstance(report, dict):
                return None
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self._saved = saved
        return report

    def rendering(self, key: list[Any]) -> str | None:
        """The text table of the report :meth:`load` gave, as printed under ``key``; None if not kept."""
        renderings = self._saved.get("renderings") if self._saved is not None else None
        if not isinstance(renderings, list):
            return None
        for item in renderings:
            if isinstance(item, list) and len(item) == 2 and item[0] == key and isinstance(item[1], str):
                return item[1]
        return None

    def keep_rendering(self, key: list[Any], text: str) -> None:
        """Keep ``text`` as the report's table under ``key`` (after :meth:`load` or :meth:`save`),
        beside at most :data:`KEPT_RENDERINGS` - 1 others, the newest first."""
        if self._saved is None:
            return
        older = self._saved.get("renderings")
        kept = (
            [item for item in older if isinstance(item, list) and item[:1] != [key]] if isinstance(older, list) else []
        )
        self._saved = {**self._saved, "renderings": [[key, text], *kept][:KEPT_RENDERINGS]}
        write_cache_file(self.path, self._saved)

    def save(self, data: dict[str, Any], requirements_files: list[str], env_fingerprint: list[list[Any]]) -> None:
        """Keep ``data`` (the report's ``to_dict()``); ``requirements_files`` are those it read, by
        path relative to the project (absolute for one outside it, which is then checked by itself)."""
        payload = {
            **self.head,
            "listing": self.listing,
            "outside": _file_stats([name for name in requirements_files if os.path.isabs(name)]),
            "env": env_fingerprint,
            "report": data,
        }
        self._saved = payload
        write_cache_file(self.path, payload)


def open_report(
    project: Path, python: str | None, ignore: tuple[str, ...], cached: bool = True
) -> tuple[str | None, str, ReportCache | None]:
    """The interpreter whose environment prune reads, why that one, and this run's entry in the
    report cache: None when nothing is cached for it (``cached`` false, as for ``--apply``; the
    cache turned off; gpuprov's own interpreter; a project that is not a directory)."""
    from provision.prune.interpreter import choose_interpreter
    from provision.prune.scancache import cache_dir

    interpreter, why = choose_interpreter(project, python)
    directory = cache_dir() if cached else None
    if directory is None or interpreter is None or not project.is_dir():
        return interpreter, why, None
    return interpreter, why, ReportCache(directory, project, interpreter, why, ignore)


def report_json(data: dict[str, Any], code: int, applied: dict[str, Any] | None) -> str:
    """What ``prune --json`` prints: the report, the run's exit code and what ``--apply`` did."""
    return json.dumps({**data, "exit_code": code, "applied": applied}, indent=2)
