"""Human-readable rendering (rich) of a snapshot and its findings. JSON needs no renderer."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from provision.console import make_console
from provision.diagnosis import Finding
from provision.snapshot import GpuInfo, Snapshot

#: packages the report names when present (others are in --json)
KEY_PACKAGES = (
    "torch",
    "vllm",
    "flashinfer-python",
    "xformers",
    "triton",
    "transformers",
    "llama-cpp-python",
    "nvidia-ml-py",
    "ollama",
)

_STYLE = {"ok": "green", "info": "cyan", "warn": "yellow", "error": "bold red"}
_MARK = {"ok": "ok", "info": "info", "warn": "WARN", "error": "ERROR"}


def _na(value: object, unit: str = "") -> str:
    return "n/a" if value is None else f"{_e(value)}{unit}"


def _e(value: object) -> str:
    """A value from a snapshot, safe inside rich markup (a user's file can hold any text)."""
    return escape(str(value))


def _watts(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f} W"


def _gpu_table(g: GpuInfo) -> Table:
    t = Table.grid(padding=(0, 2))
    t.add_column(style="dim", no_wrap=True)
    t.add_column()
    vram = "n/a"
    if g.vram_total_mib is not None:
        vram = f"{_na(g.vram_used_mib)} MiB used of {g.vram_total_mib} MiB"
        if g.vram_reserved_mib:
            vram += f" ({g.vram_reserved_mib} MiB reserved by the driver)"
    power = f"draw {_watts(g.power_draw_w)}, limit {_watts(g.power_limit_w)}"
    if g.power_default_limit_w is not None:
        power += f" (default {_watts(g.power_default_limit_w)}"
        if g.power_min_limit_w is not None:
            power += f", settable {_watts(g.power_min_limit_w)}–{_watts(g.power_max_limit_w)}"
        power += ")"
    temp = _na(g.temperature_c, " °C")
    if g.temperature_slowdown_c and g.temperature_slowdown_c > 0:
        temp += f" (slowdown at {g.temperature_slowdown_c} °C, shutdown at {_na(g.temperature_shutdown_c)} °C)"
    reasons = _e(", ".join(r for r in g.clock_event_reasons if r != "gpu_idle")) or (
        "none (idle)" if "gpu_idle" in g.clock_event_reasons else "none"
    )
    onoff = {True: "on", False: "off", None: "n/a"}
    rows = [
        (
            "GPU",
            f"[bold]{g.index}: {_e(g.name)}[/bold]  {_e(g.architecture or '?')}, compute capability "
            f"{_e(g.compute_capability or '?')}  {_e(g.pci_bus_id or '')}",
        ),
        ("memory", vram),
        ("power", power),
        ("temperature", temp),
        (
            "state",
            f"P{_na(g.performance_state)}, persistence {onoff[g.persistence_mode]}, "
            f"ECC {onoff[g.ecc_enabled]}, MIG {onoff[g.mig_enabled]}, compute mode {_na(g.compute_mode)}",
        ),
        (
            "clocks",
            f"max SM {_na(g.max_sm_clock_mhz, ' MHz')}, max memory {_na(g.max_memory_clock_mhz, ' MHz')}; "
            f"held back by: {reasons}",
        ),
        (
            "PCIe",
            f"gen {_na(g.pcie_generation_current)} of {_na(g.pcie_generation_max)}, "
            f"x{_na(g.pcie_width_current)} of x{_na(g.pcie_width_max)}",
        ),
    ]
    for key, value in rows:
        t.add_row(key, value)
    missing = sorted(k for k, v in g.unavailable.items() if k != "serial")
    if missing:
        t.add_row("not available", _e(", ".join(f"{k} ({g.unavailable[k]})" for k in missing)))
    return t


def render_doctor(
    snap: Snapshot, findings: list[Finding], *, console: Console | None = None, saved_to: Path | None = None
) -> None:
    con = console or make_console()
    h, d = snap.host, snap.driver
    origin = "" if snap.origin == "live" else f"  [dim]({_e(snap.origin)} snapshot, {_e(snap.created_at)})[/dim]"
    con.print(f"[bold]gpuprov doctor[/bold]{origin}")
    if snap.note:
        con.print(f"[dim]{_e(snap.note)}[/dim]")
    con.print(
        f"host  {_e(h.hostname or '(redacted)')} · {_e(h.distro or '?')} · kernel {_e(h.kernel or '?')} · "
        f"{_e(h.cpu_model or '?')} ({_na(h.cpu_cores)} cores) · RAM {_na(h.ram_mib)} MiB · "
        f"{'root' if h.is_root else 'not root'} · systemd {'is' if h.systemd_pid1 else 'is not'} PID 1"
    )
    if d.nvml.ok:
        con.print(
            f"driver {_e(d.driver_version)} ({_e(d.kernel_module_flavor or '?')} module) · NVML {_e(d.nvml_version)} · "
            f"max CUDA {_e(d.cuda_driver_version)} · nvidia-persistenced "
            f"{'running' if d.persistenced_running else 'not running'}"
        )
    else:
        kmod = f" · kernel module {_e(d.kernel_module_version)}" if d.kernel_module_version else ""
        con.print(f"driver [red]unavailable[/red]: {_e(d.nvml.kind)}{kmod}")
    for gpu in snap.gpus:
        con.print(_gpu_table(gpu))
    if snap.cuda_toolkits:
        tk = Table(title="CUDA toolkits", title_justify="left")
        tk.add_column("nvcc")
        tk.add_column("version")
        tk.add_column("found via")
        for t in snap.cuda_toolkits:
            tk.add_row(_e(t.nvcc), _na(t.version), _e(", ".join(t.found_via)))
        con.print(tk)
    else:
        con.print("CUDA toolkits: none found (not needed to run wheels; needed to build llama-cpp-python)")
    py = snap.python
    pt = Table(title=f"Python {_e(py.python_version or '?')} · {_e(py.interpreter or '?')}", title_justify="left")
    pt.add_column("package")
    pt.add_column("version")
    pt.add_column("notes")
    for name in KEY_PACKAGES:
        pkg = py.packages.get(name)
        if pkg is None:
            continue
        note = ""
        if name == "torch":
            note = f"CUDA {py.torch_cuda}" if py.torch_cuda else ("ROCm" if py.torch_hip else "CPU-only build")
        elif name == "llama-cpp-python":
            note = {True: "CUDA build", False: "CPU-only build", None: ""}[py.llama_cpp_cuda]
        pt.add_row(name, _e(pkg.version), _e(note))
    nvidia = sorted(n for n in py.packages if n.startswith("nvidia-") and n != "nvidia-ml-py")
    if nvidia:
        pt.add_row("nvidia-* wheels", str(len(nvidia)), _e(", ".join(nvidia[:4])) + (" …" if len(nvidia) > 4 else ""))
    if py.error:
        con.print("Python environment: [red]unreadable[/red] (the findings say why)")
    elif pt.row_count:
        con.print(pt)
    else:
        con.print(f"Python {_e(py.python_version)}: none of {', '.join(KEY_PACKAGES[:6])} installed")
    if snap.engines:
        con.print(
            "engines  "
            + " · ".join(_e(f"{e.name} {e.version or ''} ({e.path})".replace("  ", " ")) for e in snap.engines)
        )
    con.print()
    con.print("[bold]Findings[/bold]")
    for f in findings:
        line = Text()
        line.append(f"{_MARK[f.severity]:>5} ", style=_STYLE[f.severity])
        line.append(f"[{f.subject}] ", style="dim")
        line.append(f.message)
        con.print(line)
        if f.remedy and f.severity != "ok":
            con.print(Text("      → " + f.remedy, style="dim"))
    errors = sum(f.severity == "error" for f in findings)
    warns = sum(f.severity == "warn" for f in findings)
    con.print()
    con.print(f"{errors} error(s), {warns} warning(s)")
    if saved_to is not None:
        con.print(f"snapshot saved to {_e(saved_to)}")
