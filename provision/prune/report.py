"""The ``gpuprov prune`` table for people (``--json`` is :meth:`PruneReport.to_dict`)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from provision.console import inert, make_console
from provision.prune.analysis import PruneReport, Verdict


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


def _verdict_text(v: Verdict) -> str:
    if v.removable:
        text = "safe to remove"
        if v.orphans:
            text += " (with " + ", ".join(n for n, _ in v.orphans) + ")"
        return text
    if v.status == "used" and v.used_at is not None:
        return f"used: {v.used_at.where} ({v.used_at.kind})"
    return v.reason


def render_prune(report: PruneReport, console: Console | None = None) -> None:
    console = console or make_console()
    console.print(f"project:     {_shown(report.project)}")
    console.print(
        f"environment: {_shown(report.interpreter)} (Python {_shown(report.python_version)}; "
        f"{_shown(report.interpreter_source)})"
    )
    table = Table(title_justify="left", expand=False)
    for col in ("dependency", "status", "verdict / where", "size"):
        table.add_column(col, overflow="fold")
    style = {"used": "green", "unused": "yellow", "unknown": "cyan"}
    for v in report.verdicts:
        size = human_bytes(v.total_bytes if v.removable else v.record_bytes)
        name = f"[bold red]{_shown(v.name)}[/]" if v.removable else _shown(v.name)
        table.add_row(name, f"[{style[v.status]}]{v.status}[/]", _shown(_verdict_text(v)), size)
    console.print(table)
    notes: list[str] = []
    if report.unparsed:
        notes.append(
            "files that do not parse (scanned line by line instead): "
            + ", ".join(f"{f} ({w})" for f, w in report.unparsed[:5])
            + (f" and {len(report.unparsed) - 5} more" if len(report.unparsed) > 5 else "")
        )
    if report.dynamic_imports:
        notes.append(
            "imports computed at run time (unused dependencies are 'unknown'): " + ", ".join(report.dynamic_imports[:5])
        )
    if report.undeclared:
        notes.append(
            "imported but not declared: "
            + ", ".join(f"{u['distribution']} ({u['where']})" for u in report.undeclared[:8])
        )
    if report.unresolved:
        notes.append(
            "imports no installed distribution provides: "
            + ", ".join(f"{u['module']} ({u['where']})" for u in report.unresolved[:8])
        )
    for where, text, why in report.declared.problems[:5]:
        notes.append(f"{where}: {text!r}: {why}")
    if report.ignored_unknown:
        notes.append("--ignore / [tool.gpuprov.prune] names not declared: " + ", ".join(report.ignored_unknown))
    for note in notes:
        console.print(f"note: {_shown(note)}", highlight=False)
    removable = report.removable
    if removable:
        console.print(
            f"[bold]{len(removable)} removable[/] ({_shown(', '.join(v.name for v in removable))}), "
            f"{human_bytes(report.removable_bytes)} freed; `gpuprov prune --apply` removes them"
        )
    else:
        console.print("nothing is safe to remove")
