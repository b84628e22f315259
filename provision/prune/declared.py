"""The dependencies a project declares: PEP 621, its optional-dependency groups, PEP 735 dependency
groups (with ``include-group``), uv's legacy ``dev-dependencies``, and ``requirements*.txt`` files.

Every declaration keeps where it came from (file, line, group) so a report can point at it and a
removal can edit exactly that place. A line that is not a requirement is reported, never fatal; a
pyproject key of the wrong TOML type (``dependencies = "six"``) is a usage error naming file and key.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from provision.errors import UsageError

#: requirements files read from the project root and from a ``requirements/`` folder
REQUIREMENTS_GLOBS = ("requirements*.txt", "requirements/*.txt")


@dataclass(frozen=True)
class Declaration:
    """One place a dependency is declared."""

    #: ``project``, ``optional:NAME``, ``group:NAME``, ``uv-dev`` or ``requirements``
    group: str
    file: str
    line: int
    #: the requirement exactly as written
    text: str

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class DeclaredDependency:
    key: str
    name: str
    extras: set[str] = field(default_factory=set)
    declarations: list[Declaration] = field(default_factory=list)


@dataclass
class DeclaredSet:
    project_name: str | None
    dependencies: dict[str, DeclaredDependency]
    #: lines or entries that are not requirements: (where, text, why)
    problems: list[tuple[str, str, str]]
    #: the parsed pyproject (empty without one), for entry points and [tool.*] tables
    pyproject: dict[str, Any]
    pyproject_text: str
    requirements_files: list[str]


def _line_of(text: str, needle: str) -> int:
    """1-based line of the first quoted occurrence of ``needle`` in a TOML text (0 when not found)."""
    for quote in ('"', "'"):
        idx = text.find(f"{quote}{needle}{quote}")
        if idx >= 0:
            return text.count("\n", 0, idx) + 1
    return 0


def read_pyproject(path: Path) -> tuple[dict[str, Any], str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{path}: not UTF-8 text") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        return tomllib.loads(text), text
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: not valid TOML: {exc}") from None


def _toml_type(value: Any) -> str:
    names = {bool: "a boolean", str: "a string", int: "an integer", float: "a float", list: "an array", dict: "a table"}
    return names.get(type(value), "a date/time")


def _table(value: Any, key: str, path: Path) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise UsageError(f"{path}: {key} must be a table, not {_toml_type(value)}")
    return value


def _array(value: Any, key: str, path: Path) -> list[Any]:
    if not isinstance(value, list):
        raise UsageError(f"{path}: {key} must be an array of requirement strings, not {_toml_type(value)}")
    return value


def _groups_resolved(groups: dict[str, Any], problems: list[tuple[str, str, str]]) -> dict[str, list[str]]:
    """PEP 735: each group's requirement strings with ``{include-group = ...}`` expanded (cycles stop)."""
    resolved: dict[str, list[str]] = {}

    def expand(name: str, seen: tuple[str, ...]) -> list[str]:
        out: list[str] = []
        for item in groups.get(name, []) or []:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and isinstance(item.get("include-group"), str):
                inc = item["include-group"]
                if inc in seen or inc not in groups:
                    problems.append(("pyproject.toml", str(item), f"include-group {inc!r} is unknown or a cycle"))
                    continue
                out.extend(expand(inc, (*seen, inc)))
            else:
                problems.append(("pyproject.toml", str(item), "not a requirement string or include-group"))
        return out

    for name in groups:
        resolved[name] = expand(name, (name,))
    return resolved


def _own_entries(groups: dict[str, Any], name: str) -> list[str]:
    return [item for item in groups.get(name, []) or [] if isinstance(item, str)]


def read_requirements_file(
    path: Path, root: Path, seen: set[Path] | None = None
) -> tuple[list[tuple[Requirement, Declaration]], list[tuple[str, str, str]], list[Path]]:
    """Requirements of one pip requirements file, following ``-r`` includes (``-c`` files are
    constraints, not dependencies). Returns (requirements, problems, files read)."""
    seen = set() if seen is None else seen
    out: list[tuple[Requirement, Declaration]] = []
    problems: list[tuple[str, str, str]] = []
    files: list[Path] = []
    real = path.resolve()
    if real in seen:
        return out, problems, files
    seen.add(real)
    rel = _rel(path, root)
    try:
        raw = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as exc:
        problems.append((rel, "", f"cannot read: {exc.strerror or exc}"))
        return out, problems, files
    files.append(path)
    for lineno, line in logical_lines(raw):
        where = f"{rel}:{lineno}"
        stripped = re.sub(r"(^|\s)#.*$", "", line).strip()
        if not stripped:
            continue
        include = re.match(r"^(-r|--requirement)(?:\s*=\s*|\s+|(?=\S))(\S+)", stripped)
        if include:
            sub = (path.parent / include.group(2)).resolve()
            if sub.is_file():
                r, p, f = read_requirements_file(sub, root, seen)
                out += r
                problems += p
                files += f
            else:
                problems.append((where, stripped, "included file not found"))
            continue
        if stripped.startswith("-e ") or stripped.startswith("--editable"):
            egg = re.search(r"#egg=([A-Za-z0-9_.\-]+)", line)
            if egg:
                try:
                    out.append((Requirement(egg.group(1)), Declaration("requirements", rel, lineno, line.strip())))
                    continue
                except InvalidRequirement:
                    pass
            problems.append((where, stripped, "editable requirement without #egg=NAME: name unknown"))
            continue
        if stripped.startswith("-"):  # -c, -i, --index-url, --find-links, --hash-only lines...
            continue
        spec = re.sub(r"\s--?[a-z][a-z-]*(=\S+|\s+\S+)?", "", " " + stripped).strip()  # per-line options
        try:
            req = Requirement(spec)
        except InvalidRequirement as exc:
            problems.append((where, stripped, f"not a requirement: {exc}"))
            continue
        out.append((req, Declaration("requirements", rel, lineno, line.strip())))
    return out, problems, files


def logical_lines(text: str) -> list[tuple[int, str]]:
    """pip's view of a requirements file: backslash continuations joined, numbered by first line."""
    lines: list[tuple[int, str]] = []
    buf = ""
    start = 0
    for idx, line in enumerate(text.splitlines(), start=1):
        if not buf:
            start = idx
        if line.endswith("\\") and not line.lstrip().startswith("#"):
            buf += line[:-1] + " "
            continue
        lines.append((start, buf + line))
        buf = ""
    if buf:
        lines.append((start, buf))
    return lines


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def read_declared(project: Path) -> DeclaredSet:
    """Everything ``project`` declares, merged by distribution name."""
    deps: dict[str, DeclaredDependency] = {}
    problems: list[tuple[str, str, str]] = []
    data: dict[str, Any] = {}
    text = ""
    pyproject = project / "pyproject.toml"
    project_name: str | None = None

    def add(req: Requirement, decl: Declaration) -> None:
        key = canonicalize_name(req.name)
        if project_name is not None and key == canonicalize_name(project_name):
            return  # the project naming itself (``gpuprov[dev]`` inside a group)
        dep = deps.setdefault(key, DeclaredDependency(key=key, name=req.name))
        dep.extras |= {canonicalize_name(e) for e in req.extras}
        dep.declarations.append(decl)

    def add_text(item: Any, group: str) -> None:
        if not isinstance(item, str):
            problems.append(("pyproject.toml", repr(item), f"{group}: not a requirement string"))
            return
        try:
            req = Requirement(item)
        except InvalidRequirement as exc:
            problems.append((f"pyproject.toml:{_line_of(text, item)}", item, f"not a requirement: {exc}"))
            return
        add(req, Declaration(group, "pyproject.toml", _line_of(text, item), item))

    if pyproject.is_file():
        data, text = read_pyproject(pyproject)
        proj = _table(data.get("project", {}), "[project]", pyproject)
        project_name = proj.get("name") if isinstance(proj.get("name"), str) else None
        for item in _array(proj.get("dependencies", []), "[project] dependencies", pyproject):
            add_text(item, "project")
        optional = _table(proj.get("optional-dependencies", {}), "[project] optional-dependencies", pyproject)
        for extra, items in optional.items():
            for item in _array(items, f"[project.optional-dependencies] {extra}", pyproject):
                add_text(item, f"optional:{extra}")
        groups = _table(data.get("dependency-groups", {}), "[dependency-groups]", pyproject)
        for group, items in groups.items():
            _array(items, f"[dependency-groups] {group}", pyproject)
        _groups_resolved(groups, problems)  # reports bad includes and cycles
        for group in groups:
            for item in _own_entries(groups, group):  # included groups are declared where they live
                add_text(item, f"group:{group}")
        tool = _table(data.get("tool", {}), "[tool]", pyproject)
        uv = _table(tool.get("uv", {}), "[tool] uv", pyproject)
        for item in _array(uv.get("dev-dependencies", []), "[tool.uv] dev-dependencies", pyproject):
            add_text(item, "uv-dev")
    req_files: list[str] = []
    seen: set[Path] = set()
    for pattern in REQUIREMENTS_GLOBS:
        for path in sorted(project.glob(pattern)):
            if not path.is_file():
                continue
            reqs, probs, files = read_requirements_file(path, project, seen)
            problems += probs
            req_files += [_rel(f, project) for f in files]
            for req, decl in reqs:
                add(req, decl)
    return DeclaredSet(
        project_name=project_name,
        dependencies=deps,
        problems=problems,
        pyproject=data,
        pyproject_text=text,
        requirements_files=sorted(set(req_files)),
    )
