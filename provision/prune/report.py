"""The ``gpuprov prune`` table for people, drawn from the same data ``--json`` prints
(:meth:`~provision.prune.analysis.PruneReport.to_dict`): the two views cannot disagree, and a report
served from :mod:`~provision.prune.reportcache` is shown without rebuilding the report object."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from provision.console import inert, make_console


def human_bytes(size: int | None) -> str:
    if size is None:
        return "?"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


#: text from the project (file names, paths, declarations): printable, and no rich markup
_shown = inert


def _verdict_text(d: dict[str, Any]) -> str:
    if d["removable"]:
        text = "safe to remove"
        if d["orphans"]:
            text += " (with " + ", ".join(o["name"] for o in d["orphans"]) + ")"
        return text
    if d["status"] == "used" and d["used_at"] is not None:
        return f"used: {d['used_at']} ({d['use_kind']})"
    return str(d["reason"])


def render_prune(data: dict[str, Any], console: Console | None = None) -> None:
    """The table and notes of one report, given as :meth:`PruneReport.to_dict` returns it."""
    console = console or make_console()
    env = data["environment"]
    console.print(f"project:     {_shown(data['project'])}")
    console.print(
        f"environment: {_shown(env['interpreter'])} (Python {_shown(env['python_version'])}; "
        f"{_shown(env['chosen_because'])})"
    )
    table = Table(title_justify="left", expand=False)
    for col in ("dependency", "status", "verdict / where", "size"):
        table.add_column(col, overflow="fold")
    style = {"used": "green", "unused": "yellow", "unknown": "cyan"}
    for d in data["dependencies"]:
        size = human_bytes(d["bytes"] if d["removable"] else d["own_bytes"])
        name = f"[bold red]{_shown(d['name'])}[/]" if d["removable"] else _shown(d["name"])
        table.add_row(name, f"[{style[d['status']]}]{d['status']}[/]", _shown(_verdict_text(d)), size)
    console.print(table)
    notes: list[str] = []
    unparsed = data["unparsed_files"]
    if unparsed:
        notes.append(
            "files that do not parse (scanned line by line instead): "
            + ", ".join(f"{u['file']} ({u['why']})" for u in unparsed[:5])
            + (f" and {len(unparsed) - 5} more" if len(unparsed) > 5 else "")
        )
    if data["dynamic_imports"]:
        notes.append(
            "imports computed at run time (unused dependencies are 'unknown'): "
            + ", ".join(data["dynamic_imports"][:5])
        )
    if data["undeclared_imports"]:
        notes.append(
            "imported but not declared: "
            + ", ".join(f"{u['distribution']} ({u['where']})" for u in data["undeclared_imports"][:8])
        )
    if data["unresolved_imports"]:
        notes.append(
            "imports no installed distribution provides: "
            + ", ".join(f"{u['module']} ({u['where']})" for u in data["unresolved_imports"][:8])
        )
    for p in data["declaration_problems"][:5]:
        notes.append(f"{p['where']}: {p['text']!r}: {p['why']}")
    if data["ignored_not_declared"]:
        notes.append("--ignore / [tool.gpuprov.prune] names not declared: " + ", ".join(data["ignored_not_declared"]))
    for note in notes:
        console.print(f"note: {_shown(note)}", highlight=False)
    removable = [d["name"] for d in data["dependencies"] if d["removable"]]
    if removable:
        console.print(
            f"[bold]{len(removable)} removable[/] ({_shown(', '.join(removable))}), "
            f"{human_bytes(data['removable_bytes'])} freed; `gpuprov prune --apply` removes them"
        )
    else:
        console.print("nothing is safe to remove")
