"""The live view of ``gpuprov monitor``: one rich table of GPUs, one of servers, drift lines below.

Text that came from the host (GPU names, server errors) is escaped for rich markup: a ``[/x]`` in a
name is shown, not interpreted.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from provision.monitor.sampling import reason_words
from provision.nvmlcodes import THROTTLE_REASONS


def _num(value: Any, unit: str = "", fmt: str = "g") -> str:
    return "-" if value is None else f"{value:{fmt}}{unit}"


def gpu_table(sample: dict[str, Any]) -> Table:
    table = Table(title="GPUs", title_justify="left", expand=False)
    for col in (
        "GPU",
        "util",
        "VRAM used/total",
        "power / limit",
        "profile limit",
        "temp / slowdown",
        "SM / mem clock",
        "clock events",
        "PCIe",
    ):
        table.add_column(col)
    for g in sample["gpus"]:
        label = f"{g['index']} {escape(g['name'])}"
        if g["lost"]:
            table.add_row(label, Text(f"lost: {g['error']}", style="bold red"), *[""] * 7)
            continue
        vram = f"{_num(g['vram_used_mib'])}/{_num(g['vram_total_mib'])} MiB"
        power = f"{_num(g['power_draw_w'], ' W', '.0f')} / {_num(g['power_limit_w'], ' W', 'g')}"
        ref = g.get("profile") or {}
        profile_limit = Text("-" if not ref else f"{_num(ref.get('power_limit_w'), ' W')} ({ref.get('name')})")
        if g["drift"]:
            profile_limit.stylize("bold red")
        margin = g.get("temperature_margin_c")
        if g["temperature_slowdown_c"] is None and margin is not None:  # T.Limit only: degrees to slowdown
            temp = Text(f"{_num(g['temperature_c'], ' °C')} / {margin} °C to T.Limit")
            near = margin <= 5
        else:
            temp = Text(f"{_num(g['temperature_c'], ' °C')} / {_num(g['temperature_slowdown_c'], ' °C')}")
            near = (
                g["temperature_c"] is not None
                and g["temperature_slowdown_c"] is not None
                and g["temperature_c"] >= g["temperature_slowdown_c"] - 5
            )
        if near:
            temp.stylize("bold yellow")
        clocks = f"{_num(g['sm_clock_mhz'])} / {_num(g['memory_clock_mhz'])} MHz"
        lock = ref.get("locked_clocks_mhz") if ref else None
        if lock:
            clocks += f" (locked {lock[0]}-{lock[1]})"
        events = Text(", ".join(reason_words(g["clock_event_reasons"])) or "none")
        if any(r in THROTTLE_REASONS for r in g["clock_event_reasons"]):
            events.stylize("bold red")
        pcie = f"gen{_num(g['pcie_generation'])} x{_num(g['pcie_width'])}"
        if g.get("pcie_width_max") and g.get("pcie_width") and g["pcie_width"] < g["pcie_width_max"]:
            pcie += f" (of x{g['pcie_width_max']})"
        table.add_row(
            label, _num(g["utilization_gpu_pct"], " %"), vram, power, profile_limit, temp, clocks, events, pcie
        )
    return table


def server_table(sample: dict[str, Any]) -> Table | None:
    if not sample["servers"]:
        return None
    table = Table(title="Servers", title_justify="left")
    for col in ("server", "engine", "running", "waiting", "KV cache", "tokens/s", "models / state"):
        table.add_column(col)
    for s in sample["servers"]:
        if not s["up"]:
            table.add_row(escape(s["url"]), s["engine"], "", "", "", "", Text(f"down: {s['error']}", style="bold red"))
            continue
        models = ", ".join(escape(m["model"]) for m in s.get("models_loaded", [])) or "up"
        table.add_row(
            escape(s["url"]),
            s["engine"],
            _num(s.get("requests_running"), fmt=".0f"),
            _num(s.get("requests_waiting"), fmt=".0f"),
            _num(s.get("kv_cache_used_pct"), " %"),
            _num(s.get("generated_tokens_per_s")),
            models,
        )
    return table


def render(sample: dict[str, Any], *, notes: list[str] | None = None, status: str = "ok") -> Group:
    parts: list[Any] = []
    if status != "ok":
        parts.append(Text(f"no GPU readings: {status}", style="bold red"))
    if sample["gpus"]:
        parts.append(gpu_table(sample))
    servers = server_table(sample)
    if servers is not None:
        parts.append(servers)
    for g in sample["gpus"]:
        for line in g.get("drift") or []:
            parts.append(Text(f"GPU {g['index']}: {line}", style="bold red"))
        for code, count in (g.get("xid_errors") or {}).items():
            parts.append(
                Text(f"GPU {g['index']}: Xid {code} reported {count} time(s) since the start", style="bold red")
            )
    for note in notes or []:
        parts.append(Text(note, style="dim"))
    parts.append(Text(f"{sample['at']}  (t+{sample['t_s']:.0f} s)", style="dim"))
    return Group(*parts)
