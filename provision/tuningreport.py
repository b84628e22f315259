"""Human-readable rendering (rich) of profiles, plans and apply/revert results. JSON needs no renderer."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from provision.ansiblerun import RunResult
from provision.plantypes import TuningPlan
from provision.profiles import Profile, ProfileError

_ACTION = {"change": "[yellow]change[/yellow]", "ok": "[green]ok[/green]", "skip": "[dim]skip[/dim]"}
_STATUS = {
    "changed": "[yellow]changed[/yellow]",
    "ok": "[green]ok[/green]",
    "failed": "[bold red]failed[/bold red]",
    "unreachable": "[bold red]unreachable[/bold red]",
    "skipped": "[dim]skipped[/dim]",
}


def _value(setting: str, value: Any) -> str:
    if value is None:
        return {"locked_clocks_mhz": "not locked", "power_limit_w": "n/a"}.get(setting, "n/a")
    if isinstance(value, bool):
        return {"persistence_mode": "on" if value else "off"}.get(setting, "yes" if value else "no")
    if setting == "power_limit_w" and isinstance(value, int | float):
        return f"{value:g} W"
    if setting == "locked_clocks_mhz" and isinstance(value, list):
        return f"{value[0]}-{value[1]} MHz"
    return str(value)


def render_profiles(rows: list[tuple[Profile, str]], errors: list[ProfileError], console: Console) -> None:
    table = Table(title="gpuprov profiles", title_justify="left")
    for col in ("profile", "for", "settings", "this host", "from"):
        table.add_column(col)
    from provision.console import printable

    def shown(text: str) -> str:  # a user's profile file: its name, path and texts are not ours
        return escape(printable(text))

    for profile, fit in rows:
        table.add_row(
            shown(profile.name),
            shown(profile.match.describe()),
            shown(settings_summary(profile)),
            fit,
            "built-in" if profile.builtin else shown(profile.path),
        )
    console.print(table)
    for err in errors:
        console.print(f"[red]error:[/red] {shown(str(err))}")


def settings_summary(profile: Profile) -> str:
    g = profile.gpu
    parts = []
    if g.power_limit_w is not None:
        parts.append(f"{g.power_limit_w:g} W")
    if g.power_limit_percent is not None:
        parts.append("default power" if g.power_limit_percent == 100 else f"{g.power_limit_percent:g} % power")
    if g.fallback_locked_clocks_mhz:
        parts.append(f"(else clocks ≤ {g.fallback_locked_clocks_mhz[1]} MHz)")
    if g.persistence is not None:
        parts.append("persistence " + ("on" if g.persistence else "off"))
    if profile.suspend.preserve_video_memory:
        parts.append("survives suspend")
    parts += [name for name in profile.sections if name not in ("gpu", "suspend")]
    return ", ".join(parts) or "nothing"


def render_plan(plan: TuningPlan, console: Console, *, diff: bool = False) -> None:
    table = Table(title=f"plan: {plan.desired.profile}", title_justify="left")
    for col in ("item", "setting", "current", "desired", "action", "note"):
        table.add_column(col, no_wrap=col in ("setting", "action"))
    for c in plan.changes:
        table.add_row(
            escape(c.subject),
            c.setting,
            escape(_value(c.setting, c.current)),
            escape(_value(c.setting, c.desired)),
            _ACTION.get(c.action, c.action),
            escape(c.note),
        )
    console.print(table)
    for note in plan.desired.notes:
        console.print(f"[cyan]note:[/cyan] {escape(note)}")
    if diff:
        for c in plan.changes:
            if c.diff:
                console.print(escape(c.diff), highlight=False)
    n = len(plan.pending)
    console.print(f"{n} change{'s' if n != 1 else ''} to make" if n else "nothing to change")


def _diff_text(diff: Any) -> str:
    items = diff if isinstance(diff, list) else [diff]
    out = []
    for d in items:
        if isinstance(d, dict) and ("before" in d or "after" in d):
            out.append(f"--- {d.get('before_header', 'before')}\n+++ {d.get('after_header', 'after')}")
            out += [f"-{line}" for line in str(d.get("before", "")).splitlines()]
            out += [f"+{line}" for line in str(d.get("after", "")).splitlines()]
    return "\n".join(out)


def render_run(result: RunResult, console: Console, *, title: str, check: bool, diff: bool) -> None:
    table = Table(title=title + (" (check mode: nothing changed)" if check else ""), title_justify="left")
    for col in ("task", "item", "result", "detail"):
        table.add_column(col)
    for r in result.results:
        task = r.task.split(" : ", 1)[-1]
        table.add_row(escape(task), escape(r.item or ""), _STATUS.get(r.status, r.status), escape(r.msg))
    console.print(table)
    if diff:
        for r in result.results:
            if r.diff:
                console.print(escape(_diff_text(r.diff)), highlight=False)
    console.print(
        f"changed={result.count('changed')} ok={result.count('ok')} failed={len(result.failed)} "
        f"skipped={result.count('skipped')}"
    )
