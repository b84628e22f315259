"""Uses that are not imports: commands run from scripts, ``python -m``, ``[tool.X]`` tables, and
dotted module paths in configuration files.

A distribution whose console script (``uvicorn``, ``pytest``) is run by a shell script, Makefile,
Dockerfile or CI file, or through ``subprocess`` with a literal command, is used even though no
Python file imports it; so is a tool configured in ``pyproject.toml`` (``[tool.ruff]``), and a module
a YAML/TOML config names for a framework to import (Hydra's ``_target_: torch.optim.AdamW``).
Prose (``README.md``, ``docs/*.rst``, ``*.txt``) is weak evidence: a command a document mentions may be
an example for readers; such a mention keeps the dependency and says it is weak.

The ``[build-system]`` table is not read: its ``build-backend`` (``setuptools.build_meta``) and
``requires`` run when the project is built, not when it runs.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from provision.prune.sourcetree import HIDDEN_KEPT, is_regular_file, is_skipped_dir

#: files read for commands: by suffix, and by exact name
TEXT_SUFFIXES = (
    ".sh",
    ".bash",
    ".zsh",
    ".mk",
    ".yml",
    ".yaml",
    ".toml",
    ".cfg",
    ".ini",
    ".service",
    ".dockerfile",
    ".ps1",
    ".bat",
    ".cmd",
    ".env",
    ".ipynb",
    ".txt",
    ".md",
    ".rst",
)
TEXT_NAMES = (
    "Makefile",
    "makefile",
    "GNUmakefile",
    "Dockerfile",
    "Containerfile",
    "Procfile",
    "justfile",
    "Justfile",
    "Taskfile",
    "noxfile.py",
    "tasks.py",
    "fabfile.py",
)
MAX_TEXT_BYTES = 2 * 1024 * 1024
#: ``python -m pkg`` (``python3.11 -X dev -m pkg``); the character before ``python`` is checked
#: apart (:data:`_PY_M_AFTER`): a pattern that starts with the literal is searched for ~30x faster
_PY_M = re.compile(r"python[0-9.]*\s+(?:-[A-Za-z]+\s+)*-m\s+([A-Za-z_][\w.]*)")
_PY_M_AFTER = re.compile(r"[\s\"'`(\[]")
#: what may not stand right before a command's name (checked apart from the search, as above)
_NOT_BEFORE_COMMAND = re.compile(r"[\w.\-/=<>~!]")
#: configuration files whose dotted names (``_target_: pkg.mod.Class``) a framework may import
DOTTED_NAME_SUFFIXES = (".yml", ".yaml", ".toml")
_DOTTED = re.compile(r"(?<![\w.\-/])([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)(?![\w\-/])")
#: documents for people: what they mention is weak evidence of use
PROSE_SUFFIXES = (".md", ".rst", ".txt")
WEAK = "in prose: weak evidence"


@dataclass(frozen=True)
class Mention:
    word: str
    where: str
    kind: str  # command, python -m, config; "(in prose: weak evidence)" appended for documents

    @property
    def weak(self) -> bool:
        return self.kind.endswith(f"({WEAK})")


def text_files(root: Path) -> list[Path]:
    """The text files whose mentions count (a ``Path`` made only for those: the walk is plain strings)."""
    out: list[Path] = []
    top = os.fspath(root)
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d in HIDDEN_KEPT or not is_skipped_dir(dirpath, d, top))
        scripts_dir = os.path.basename(dirpath) in ("bin", "scripts")
        for name in sorted(filenames):
            in_scripts = scripts_dir and "." not in name
            wanted = name.endswith(TEXT_SUFFIXES) or name in TEXT_NAMES or name.startswith("Dockerfile") or in_scripts
            if wanted:
                path = Path(dirpath, name)
                if is_regular_file(path):
                    out.append(path)
    return out


def find_mentions(
    root: Path, commands: set[str], pyproject: dict[str, Any], pyproject_text: str
) -> tuple[list[Mention], list[Mention]]:
    """(command uses of the given names, modules: ``python -m`` ones and dotted names in YAML/TOML
    configs) in the project's text files."""
    found: list[Mention] = []
    modules: list[Mention] = []
    seen: set[tuple[str, bool]] = set()
    dotted_seen: set[str] = set()
    pattern = (
        re.compile(
            r"(" + "|".join(re.escape(c) for c in sorted(commands, key=len, reverse=True)) + r")(?![\w\-=<>~!\[])"
        )
        if commands
        else None
    )
    for path in text_files(root):
        try:
            if path.stat().st_size > MAX_TEXT_BYTES:
                continue
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        rel = str(path.relative_to(root))
        if rel == "pyproject.toml":
            text = _without_dependency_arrays(pyproject_text)
        elif re.match(r"requirements.*\.txt$", path.name) or path.parent.name == "requirements":
            continue  # declarations, not uses
        prose = f" ({WEAK})" if path.name.endswith(PROSE_SUFFIXES) else ""
        for m in _PY_M.finditer(text):
            if m.start() and not _PY_M_AFTER.match(text, m.start() - 1):
                continue
            line = text.count(chr(10), 0, m.start(1)) + 1
            modules.append(Mention(m.group(1), f"{rel}:{line}", "python -m" + prose))
        if path.name.endswith(DOTTED_NAME_SUFFIXES):
            line, counted = 1, 0  # matches come in order: count the newlines since the last one
            for m in _DOTTED.finditer(text):
                if m.group(1) not in dotted_seen:  # the first place a name appears is enough
                    dotted_seen.add(m.group(1))
                    line += text.count("\n", counted, m.start(1))
                    counted = m.start(1)
                    modules.append(Mention(m.group(1), f"{rel}:{line}", "config"))
        if pattern is None:
            continue
        for m in pattern.finditer(text):
            if m.start() and _NOT_BEFORE_COMMAND.match(text, m.start() - 1):
                continue
            if (m.group(1), bool(prose)) in seen:
                continue
            seen.add((m.group(1), bool(prose)))
            found.append(Mention(m.group(1), f"{rel}:{text.count(chr(10), 0, m.start()) + 1}", "command" + prose))
    return found, modules


def _without_dependency_arrays(text: str) -> str:
    """pyproject text with the dependency declarations and the ``[build-system]`` table blanked out
    (a declaration is not a use; building is not running)."""
    out: list[str] = []
    in_array = False
    in_table = False
    in_build = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("["):
            header = stripped.split("#", 1)[0].strip("[] ")
            in_table = header in ("project.optional-dependencies", "dependency-groups")
            in_build = header == "build-system"
            in_array = False
            out.append(line)
            continue
        if in_build:  # build-backend and requires: used to build the project, not when it runs
            out.append("")
            continue
        if in_array:
            out.append("")
            if stripped.startswith("]") or stripped.endswith("]"):
                in_array = False
            continue
        if re.match(r"^(dependencies|dev-dependencies|requires|[\w\-]+)\s*=\s*\[", stripped) and (
            in_table or stripped.startswith(("dependencies", "dev-dependencies", "requires"))
        ):
            in_array = not stripped.rstrip().endswith("]")
            out.append("")
            continue
        out.append(line)
    return "\n".join(out)


def tool_tables(pyproject: dict[str, Any]) -> set[str]:
    """Names of ``[tool.X]`` tables: tools the project configures, so uses."""
    tool = pyproject.get("tool", {})
    return set(tool) if isinstance(tool, dict) else set()


_CONFIG_SUFFIXES = (".yml", ".yaml", ".toml", ".ini", ".cfg", ".json", ".conf")


def config_file_tools(root: Path) -> dict[str, str]:
    """Tools configured by a file of their own at the project root (``.ansible-lint``, ``mypy.ini``,
    ``.coveragerc``, ``.pre-commit-config.yaml``) or by a section of ``setup.cfg``/``tox.ini``
    (``[flake8]``, ``[tool:pytest]``, ``[coverage:run]``): tool name → where."""
    import configparser

    found: dict[str, str] = {}
    try:
        entries = sorted(root.iterdir())
    except OSError:
        return found
    for path in entries:
        if not path.is_file():
            continue
        stem = path.name.lstrip(".")
        for suffix in _CONFIG_SUFFIXES:
            if stem.endswith(suffix):
                stem = stem[: -len(suffix)]
                break
        for tail in ("-config", "rc"):
            if stem.endswith(tail) and len(stem) > len(tail):
                found.setdefault(stem[: -len(tail)], path.name)
        if stem:
            found.setdefault(stem, path.name)
        if path.name in ("setup.cfg", "tox.ini"):
            parser = configparser.ConfigParser(interpolation=None, strict=False)
            try:
                parser.read(path, encoding="utf-8")
            except (configparser.Error, UnicodeDecodeError):
                continue
            for section in parser.sections():
                name = section.removeprefix("tool:").split(":", 1)[0].strip()
                if name:
                    found.setdefault(name, f"{path.name} [{section}]")
    return found
