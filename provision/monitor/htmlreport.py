"""``gpuprov monitor report --html FILE``: one self-contained HTML file, the plots inline as SVG.

matplotlib draws them with its Agg/SVG backends: no browser, no display, no network; the file has no
script and loads nothing. Text from the host (GPU names, profile names, errors) is HTML-escaped.
matplotlib (with numpy, pillow, fonttools...) is gpuprov's ``report`` extra, not a dependency of every
host: without it the report says in one line how to install it.
"""

from __future__ import annotations

import html
import io
from types import ModuleType
from typing import Any

from provision.errors import GpuprovError

#: how to install the plotting library the HTML report needs
INSTALL_REPORT_EXTRA = "uv pip install 'gpuprov[report]'"

PLOTS = (
    ("temperature", "Temperature (°C)"),
    ("power", "Power draw vs limit (W)"),
    ("clocks", "Clocks (MHz)"),
    ("vram", "VRAM used (MiB)"),
    ("throughput", "Server throughput (generated tokens/s)"),
)


def require_matplotlib() -> ModuleType:
    """matplotlib, imported; else a one-line error saying how to install it (the ``report`` extra)."""
    try:
        import matplotlib
    except ImportError as exc:
        what = "is not installed" if exc.name == "matplotlib" else f"cannot be imported ({exc})"
        raise GpuprovError(
            f"--html draws its plots with matplotlib, which {what}: it is gpuprov's report extra: "
            f"{INSTALL_REPORT_EXTRA}"
        ) from None
    return matplotlib


def figures(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """name -> matplotlib Figure, one per plot that has data."""
    matplotlib = require_matplotlib()
    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure

    by_gpu: dict[int, list[dict[str, Any]]] = {}
    for s in samples:
        if s["gpu"] >= 0 and not s["lost"]:
            by_gpu.setdefault(s["gpu"], []).append(s)
    out: dict[str, Any] = {}

    def axes(name: str, title: str) -> Any:
        fig = Figure(figsize=(9, 3.2), layout="constrained")
        ax = fig.add_subplot()
        ax.set_title(title)
        ax.set_xlabel("time (min)")
        ax.grid(alpha=0.3)
        out[name] = fig
        return ax

    def series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
        pts = [(r["t_s"] / 60, r[key]) for r in rows if r.get(key) is not None]
        return [p[0] for p in pts], [p[1] for p in pts]

    if by_gpu:
        ax = axes("temperature", "Temperature (°C)")
        for index, rows in by_gpu.items():
            ax.plot(*series(rows, "temperature_c"), label=f"GPU {index}")
            xs, ys = series(rows, "temperature_slowdown_c")
            if ys:
                ax.plot(xs, ys, linestyle="--", label=f"GPU {index} slowdown")
        ax.legend(loc="best", fontsize="small")
        ax = axes("power", "Power draw vs limit (W)")
        for index, rows in by_gpu.items():
            ax.plot(*series(rows, "power_draw_w"), label=f"GPU {index} draw")
            ax.plot(*series(rows, "power_limit_w"), linestyle="--", label=f"GPU {index} enforced limit")
            xs, ys = series(rows, "profile_power_limit_w")
            if ys:
                ax.plot(xs, ys, linestyle=":", label=f"GPU {index} profile limit")
        ax.legend(loc="best", fontsize="small")
        if any(r.get("sm_clock_mhz") is not None for rows in by_gpu.values() for r in rows):
            ax = axes("clocks", "Clocks (MHz)")
            for index, rows in by_gpu.items():
                ax.plot(*series(rows, "sm_clock_mhz"), label=f"GPU {index} SM")
                ax.plot(*series(rows, "memory_clock_mhz"), label=f"GPU {index} memory")
            ax.legend(loc="best", fontsize="small")
        ax = axes("vram", "VRAM used (MiB)")
        for index, rows in by_gpu.items():
            ax.plot(*series(rows, "vram_used_mib"), label=f"GPU {index}")
        ax.legend(loc="best", fontsize="small")
    rates: dict[str, list[tuple[float, float]]] = {}
    for s in samples:
        for server in s.get("servers") or []:
            if server.get("generated_tokens_per_s") is not None:
                rates.setdefault(server["url"], []).append((s["t_s"] / 60, server["generated_tokens_per_s"]))
    if rates:
        ax = axes("throughput", "Server throughput (generated tokens/s)")
        for url, pts in rates.items():
            ax.plot([p[0] for p in pts], [p[1] for p in pts], label=url)
        ax.legend(loc="best", fontsize="small")
    return out


def _svg(fig: Any) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})  # the same samples give the same file
    text = buf.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog and DOCTYPE: inline SVG in HTML5


def _table(rows: list[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def summary_rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    rows: list[tuple[str, str]] = []
    run = summary["run"]
    rows.append(
        (
            "run",
            f"{run['id']} on {run.get('hostname') or '?'} at {run['created_at']}, "
            f"profile {run.get('profile') or 'none'}",
        )
    )
    for g in summary["gpus"]:
        t = g["temperature_c"]
        p = f"GPU {g['index']}"
        rows.append(
            (
                f"{p} temperature",
                f"max {t['max']} °C, p50 {t['p50']}, p95 {t['p95']}, p99 {t['p99']} "
                f"(slowdown {g['temperature_slowdown_c']})",
            )
        )
        rows.append((f"{p} energy", f"{g['energy_wh']} Wh, average {g['power_draw_w_mean']} W"))
        throttled = ", ".join(f"{k} {v:g} s" for k, v in g["throttled_s"].items()) or "never"
        rows.append((f"{p} throttled", throttled))
        rows.append((f"{p} VRAM", f"max {g['vram_used_mib_max']} MiB, slope {g['vram_slope_mib_per_h']} MiB/h"))
        rows.append((f"{p} power limit not the profile's", f"{g['power_limit_not_profile_samples']} samples"))
        if g["xid_errors"]:
            rows.append((f"{p} Xid errors", ", ".join(f"Xid {k}: {v}" for k, v in g["xid_errors"].items())))
        if g["lost_samples"]:
            rows.append((f"{p} lost", f"{g['lost_samples']} samples"))
    for s in summary["servers"]:
        rows.append(
            (
                f"server {s['url']}",
                f"{s['reads']} reads, {s['failed_reads']} failed; tokens/s p50 {s['generated_tokens_per_s']['p50']}",
            )
        )
    for u in summary["units"]:
        rows.append((f"unit {u['unit']}", f"restarts {u['restarts']}, ended {u['state_end']} ({u['result_end']})"))
    return rows


def render_html(summary: dict[str, Any], samples: list[dict[str, Any]]) -> str:
    figs = figures(samples)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>gpuprov monitor report, run {int(summary['run']['id'])}</title>",
        "<style>body{font-family:sans-serif;max-width:1000px;margin:2em auto}th{text-align:left;padding-right:1em}"
        "svg{max-width:100%;height:auto}</style></head><body>",
        f"<h1>gpuprov monitor report, run {int(summary['run']['id'])}</h1>",
        _table(summary_rows(summary)),
    ]
    for name, title in PLOTS:
        if name in figs:
            parts.append(f'<h2>{html.escape(title)}</h2><figure id="{name}">{_svg(figs[name])}</figure>')
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_png(samples: list[dict[str, Any]], name: str, path: str) -> None:
    """One plot as a PNG (to look at in a review, or attach to a note)."""
    figures(samples)[name].savefig(path, format="png", dpi=90)
