"""What a project's code imports: every Python source of the project (:mod:`~provision.prune.sourcetree`)
scanned with :mod:`ast` (:mod:`~provision.prune.sourcescan`, one file at a time; Jupyter notebooks by
their code cells), merged in file order, each file's result kept in the scan cache
(:mod:`~provision.prune.scancache`) by path, size and mtime; plus the entry-point strings of
``pyproject.toml``.
"""

from __future__ import annotations

import contextlib
import gc
import marshal
import math
import os
import re
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from provision.prune.scanresult import DistributionReference, ImportUse, ScanResult
from provision.prune.sourcescan import literal_line, scan_source
from provision.prune.sourcetree import first_party_modules, python_files

if TYPE_CHECKING:
    from provision.prune.scancache import ScanCache

_T = TypeVar("_T")


def notebook_source(data: bytes) -> bytes:
    """The code cells of a Jupyter notebook as one Python source; IPython magics and shell lines
    (``%pip``, ``!ls``) become blank lines. Not a notebook: empty."""
    import json

    try:
        nb = json.loads(data)
        cells = nb.get("cells", []) if isinstance(nb, dict) else []
        lines: list[str] = []
        for cell in cells:
            if not isinstance(cell, dict) or cell.get("cell_type") != "code":
                continue
            src = cell.get("source", "")
            text = "".join(src) if isinstance(src, list) else str(src)
            lines += ["" if ln.lstrip().startswith(("%", "!", "?")) else ln for ln in text.splitlines()]
        return "\n".join(lines).encode("utf-8", errors="replace") + b"\n"
    except (ValueError, TypeError, AttributeError):
        return b""


def entry_point_imports(pyproject: dict[str, Any], text: str) -> list[ImportUse]:
    """Modules named by ``[project.scripts]``, ``gui-scripts`` and ``entry-points`` (``pkg.mod:attr``)."""
    proj = pyproject.get("project", {}) if isinstance(pyproject.get("project"), dict) else {}
    tables: list[Any] = [proj.get("scripts", {}), proj.get("gui-scripts", {})]
    eps = proj.get("entry-points", {})
    if isinstance(eps, dict):
        tables += list(eps.values())
    out: list[ImportUse] = []
    for table in tables:
        if not isinstance(table, dict):
            continue
        for value in table.values():
            if not isinstance(value, str):
                continue
            module = value.split(":", 1)[0].strip()
            if re.fullmatch(r"[A-Za-z_][\w.]*", module):
                idx = text.find(value)
                line = text.count("\n", 0, idx) + 1 if idx >= 0 else 0
                out.append(ImportUse(module, "pyproject.toml", line, "entry-point"))
    return out


def literal_location(root: Path, rel: str, literal: str) -> str:
    """``rel:line`` of the first string literal ``literal`` in the project's file ``rel`` (a notebook:
    in its code cells, as scanned); ``rel`` alone when it cannot be read or no longer holds it."""
    try:
        data = (root / rel).read_bytes()
    except OSError:
        return rel
    line = literal_line(notebook_source(data) if rel.endswith(".ipynb") else data, literal)
    return rel if line is None else f"{rel}:{line}"


def _payload(part: ScanResult) -> dict[str, Any]:
    """One file's scan as JSON-ready lists (the cache's entry)."""
    return {
        "imports": [[u.module, u.line, u.kind] for u in part.imports],
        "refs": [[r.distribution, r.line] for r in part.dist_references],
        "dynamic": part.dynamic,
        "unparsed": [list(u) for u in part.unparsed],
        "strings": list(part.strings),
    }


def _merge(result: ScanResult, rel: str, payload: dict[str, Any]) -> None:
    result.imports += [ImportUse(m, rel, line, kind) for m, line, kind in payload["imports"]]
    result.dist_references += [DistributionReference(d, rel, line) for d, line in payload["refs"]]
    result.dynamic += payload["dynamic"]
    result.unparsed += [(f, why) for f, why in payload["unparsed"]]
    strings = result.strings
    for literal in payload["strings"]:
        strings.setdefault(literal, rel)


def _scan_file(path: str, rel: str) -> dict[str, Any]:
    """One file's scan payload, or ``{"error": why}`` when it cannot be read."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return {"error": f"cannot read: {exc.strerror or exc}"}
    part = ScanResult()
    scan_source(notebook_source(data) if path.endswith(".ipynb") else data, rel, part)
    return _payload(part)


def _without_cyclic_gc(work: Callable[[], _T]) -> _T:
    """Run ``work`` with the cyclic garbage collector paused. Syntax trees hold no reference cycles
    (reference counting frees each one), yet building one allocates enough objects to start a
    collection every few hundred nodes: paused, the scan of fastapi's and pretalx's 1913 files took
    1.46-1.54 s of CPU instead of 1.72-1.80 s (4 alternating runs in one process)."""
    if not gc.isenabled():
        return work()
    gc.disable()
    try:
        return work()
    finally:
        gc.enable()


#: below this many bytes to parse the scan stays in one process (a fork and its answer cost ~5 ms)
MIN_PARALLEL_BYTES = 256 * 1024


def _processes() -> int:
    """How many processes the scan may use: one per CPU the 1-minute load average leaves idle (rounded
    up: this one counts), at most 8. On the shared 2-core machine two processes took 0.42-0.48x the
    time of one on fastapi's scan at a load average below 1; at a load of 5 one session measured
    0.55-0.83x, another 1.05-1.34x, and 0.80-1.00x at 1.4-2.8 (benchmarks/prune_vs_deptry.md): with no
    idle CPU the gain is a gamble and the fork a cost."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        load = 0.0
    return max(1, min(8, cpus, math.ceil(cpus - load)))


def _scan_files(todo: list[tuple[str, str, int]]) -> list[dict[str, Any]]:
    """The scan payloads of ``todo`` ((path, rel, size) each), in its order. With as many bytes to parse
    as ``MIN_PARALLEL_BYTES`` and an idle CPU (:func:`_processes`), forked children parse every n-th file
    (the parent the rest) and send their payloads back through a pipe (:mod:`marshal`); a child that
    fails or answers nothing leaves its files to the parent. Only a single-threaded process forks."""
    parts = _processes()
    total = sum(size for _, _, size in todo)
    if parts < 2 or total < MIN_PARALLEL_BYTES or not hasattr(os, "fork") or threading.active_count() != 1:
        return list(_scan_here(todo).values())
    shares = [todo[i::parts] for i in range(parts)]
    children: list[tuple[int, int, int]] = []  # (share index, pid, read end of its pipe)
    try:
        for index in range(1, parts):
            read_fd, write_fd = os.pipe()
            try:
                pid = os.fork()
            except OSError:
                os.close(read_fd)
                os.close(write_fd)
                break
            if pid == 0:  # the child: parse its share, answer, leave without running the parent's cleanup
                code = 1
                try:
                    os.close(read_fd)
                    gc.disable()
                    encoded = marshal.dumps([_scan_file(path, rel) for path, rel, _ in shares[index]])
                    with os.fdopen(write_fd, "wb") as out:
                        out.write(encoded)
                    code = 0
                finally:
                    os._exit(code)
            os.close(write_fd)
            children.append((index, pid, read_fd))
        forked = {index for index, _, _ in children}
        payloads = _scan_here([item for i, share in enumerate(shares) if i not in forked for item in share])
        while children:
            index, pid, read_fd = children.pop()  # _read_answer closes its pipe and reaps it
            share = shares[index]
            answer = _read_answer(read_fd, pid, len(share))  # None: the child failed, its files are parsed here
            payloads.update(_scan_here(share) if answer is None else zip((p for p, _, _ in share), answer, strict=True))
        return [payloads[path] for path, _, _ in todo]
    finally:
        for _, pid, read_fd in children:  # interrupted: no child outlives the scan
            with contextlib.suppress(OSError):
                os.close(read_fd)
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)


def _scan_here(todo: list[tuple[str, str, int]]) -> dict[str, dict[str, Any]]:
    """The scan payloads of ``todo`` parsed in this process, by path (in ``todo``'s order)."""
    return _without_cyclic_gc(lambda: {path: _scan_file(path, rel) for path, rel, _ in todo})


def _read_answer(read_fd: int, pid: int, expected: int) -> list[dict[str, Any]] | None:
    """A child's payloads (closing its pipe and reaping it), or None when it failed or answered nonsense."""
    with os.fdopen(read_fd, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if status != 0:
        return None
    try:
        answer = marshal.loads(data)
    except (EOFError, ValueError, TypeError):
        return None
    return answer if isinstance(answer, list) and len(answer) == expected else None


def scan_project(root: Path, exclude: tuple[str, ...] = (), cache: ScanCache | None = None) -> ScanResult:
    """Scan every Python file of the project (hidden dirs, environments and builds skipped); with a
    ``cache``, a file whose size and mtime it recorded is not read again."""
    result = ScanResult(first_party=first_party_modules(root))
    files: list[tuple[str, dict[str, Any] | None, os.stat_result]] = []
    todo: list[tuple[str, str, int]] = []
    for path, rel, st in python_files(root, exclude):
        payload = cache.get(rel, st.st_size, st.st_mtime_ns) if cache is not None else None
        if payload is None:
            todo.append((path, rel, st.st_size))
        files.append((rel, payload, st))
    scanned = iter(_scan_files(todo))
    for rel, payload, seen in files:
        if payload is None:
            payload = next(scanned)
            if cache is not None and "error" not in payload:
                cache.put(rel, seen.st_size, seen.st_mtime_ns, payload)
        if "error" in payload:
            result.unparsed.append((rel, payload["error"]))
            continue
        result.files_scanned += 1
        _merge(result, rel, payload)
    if cache is not None:
        cache.save()
    return result
