"""``gpuprov monitor`` (live view, ``--once --json``, ``--record``), ``gpuprov monitor report`` and
``gpuprov exporter``: thin front doors over :mod:`provision.monitor`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from provision.cli import app

monitor_app = typer.Typer(
    help="The GPUs and the inference server side by side, against the applied profile.",
    invoke_without_command=True,
    rich_markup_mode=None,
)
app.add_typer(monitor_app, name="monitor")

ServerOption = Annotated[
    list[str] | None,
    typer.Option(
        "--server",
        metavar="ENGINE=URL",
        help="A server to watch besides the installed serving units: vllm=URL, llama_server=URL, "
        "llama_cpp_python=URL or ollama=URL (repeatable).",
    ),
]
DbOption = Annotated[
    Path | None,
    typer.Option("--db", metavar="PATH", help="History database [default: $XDG_DATA_HOME/gpuprov/bench.db]."),
]
MIN_INTERVAL_S = 0.05


def _watchers(servers: list[str] | None, *, installed: bool) -> list[Any]:
    from provision.errors import UsageError
    from provision.monitor.servers import ENGINES, ServerWatcher, watchers_for_installed

    out = []
    for item in servers or []:
        engine, sep, url = item.partition("=")
        if not sep or engine not in ENGINES or not url.startswith(("http://", "https://")):
            raise UsageError(
                f"--server {item!r}: expected ENGINE=http://HOST:PORT with ENGINE one of {', '.join(ENGINES)}"
            )
        out.append(ServerWatcher(url, engine))
    if installed:
        from provision.serving.units import installed_servers

        out.extend(watchers_for_installed(installed_servers()))
    return out


def _monitor(servers: list[str] | None, *, installed: bool = True) -> Any:
    from provision import nvml
    from provision.monitor.sampling import Monitor

    return Monitor(nvml.backend(), servers=_watchers(servers, installed=installed))


def _check_interval(interval_s: float) -> None:
    from provision.errors import UsageError

    if not (math.isfinite(interval_s) and MIN_INTERVAL_S <= interval_s <= 3600):
        raise UsageError(f"--interval {interval_s:g}: expected seconds from {MIN_INTERVAL_S:g} to 3600")


@monitor_app.callback()
def monitor(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="One sample, then exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON (one object per sample, one per line).")] = False,
    interval: Annotated[float, typer.Option("--interval", help="Seconds between samples.")] = 1.0,
    record: Annotated[bool, typer.Option("--record", help="Record a soak run into the history.")] = False,
    duration: Annotated[
        str | None, typer.Option("--duration", help="How long to record or watch: 90s, 15m, 8h.")
    ] = None,
    server: ServerOption = None,
    no_installed: Annotated[
        bool, typer.Option("--no-installed", help="Do not watch the serving units gpuprov installed.")
    ] = False,
    db: DbOption = None,
) -> None:
    """Live view per GPU: utilisation, VRAM, power against the enforced and the profile's limit, temperature
    against the slowdown threshold, clocks, clock event reasons in words, PCIe link; and the servers."""
    if ctx.invoked_subcommand is not None:
        return
    import time

    from provision.console import printable_copy
    from provision.monitor.soak import parse_duration

    _check_interval(interval)
    duration_s = parse_duration(duration) if duration is not None else None
    if record and duration_s is None:
        from provision.errors import UsageError

        raise UsageError("--record needs --duration (for example --duration 8h)")
    with _monitor(server, installed=not no_installed) as mon:
        if record:
            _record(mon, db, duration_s or 0, interval, as_json)
            return
        if once or as_json:
            started = time.monotonic()
            while True:
                sample = printable_copy(mon.sample().to_dict())
                typer.echo(json.dumps(sample | {"notes": mon.notes, "status": mon.status}) if as_json else "")
                if not as_json:
                    _print_once(sample, mon)
                if once or (duration_s is not None and time.monotonic() - started >= duration_s):
                    return
                time.sleep(interval)
        _live(mon, interval, duration_s)


def _print_once(sample: dict[str, Any], mon: Any) -> None:
    from provision.console import make_console as console
    from provision.monitor.view import render

    console().print(render(sample, notes=mon.notes, status=mon.status))


def _live(mon: Any, interval: float, duration_s: float | None) -> None:
    import time

    from rich.live import Live

    from provision.console import make_console as console
    from provision.console import printable_copy
    from provision.monitor.view import render

    started = time.monotonic()
    sample = printable_copy(mon.sample().to_dict())
    try:
        with Live(render(sample, notes=mon.notes, status=mon.status), console=console(), auto_refresh=False) as live:
            while duration_s is None or time.monotonic() - started < duration_s:
                time.sleep(interval)
                sample = printable_copy(mon.sample().to_dict())
                live.update(render(sample, notes=mon.notes, status=mon.status), refresh=True)
    except KeyboardInterrupt:
        pass


def _record(mon: Any, db: Path | None, duration_s: float, interval: float, as_json: bool) -> None:
    import socket

    from provision import applystate
    from provision.bench.historydb import default_db_path
    from provision.monitor.soak import record
    from provision.monitor.soakstore import SoakStore
    from provision.serving.units import installed_servers

    units = [s.unit for s in installed_servers()]
    try:
        profile = applystate.applied_profile(applystate.state_dir())
    except Exception:  # an unreadable state directory names no profile; the notes say why
        profile = None
    with SoakStore(db or default_db_path(), write=True) as store:
        on_sample = (lambda s: typer.echo(json.dumps(s))) if as_json else None
        run_id = record(
            mon,
            store,
            duration_s=duration_s,
            interval_s=interval,
            units=units,
            hostname=socket.gethostname(),
            profile=profile,
            on_sample=on_sample,
        )
    typer.echo(f"recorded monitor run {run_id} (gpuprov monitor report {run_id})", err=as_json)


@monitor_app.command("report")
def report(
    run: Annotated[int | None, typer.Argument(help="Run id (default: the newest).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON summary.")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", metavar="FILE", help="Write a self-contained HTML report with plots.")
    ] = None,
    list_runs: Annotated[bool, typer.Option("--list", help="List the recorded runs.")] = False,
    db: DbOption = None,
) -> None:
    """Summarise a recorded soak run: temperature percentiles, seconds throttled by reason, energy, VRAM
    growth slope, server errors and unit restarts."""
    from provision.bench.historydb import default_db_path
    from provision.errors import UsageError
    from provision.monitor.soak import summarize
    from provision.monitor.soakstore import SoakStore

    if html is not None:  # before the history is opened (and migrated): a missing extra changes nothing
        from provision.monitor.htmlreport import require_matplotlib

        require_matplotlib()
    path = db or default_db_path()
    if not path.exists():
        raise UsageError(f"{path}: no history yet (gpuprov monitor --record --duration 8h makes one)")
    with SoakStore(path) as store:
        if list_runs:
            for r in store.monitor_runs():
                typer.echo(f"{r['id']}\t{r['created_at']}\t{r['hostname']}\t{r['duration_s']} s\t{r['gpu_names']}")
            return
        chosen = store.monitor_run(run)
        samples = store.monitor_samples(chosen["id"])
    summary = summarize(chosen, samples)
    if html is not None:
        from provision.monitor.htmlreport import render_html

        try:
            html.write_text(render_html(summary, samples), encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--html {html}: cannot write: {exc.strerror or exc}") from None
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    from provision.console import make_console as console
    from provision.monitor.htmlreport import summary_rows

    out = console()
    for key, value in summary_rows(summary):
        out.print(f"{key}: {value}", markup=False, highlight=False)
    if html is not None:
        out.print(f"wrote {html}", markup=False, highlight=False)


@app.command("exporter")
def exporter(
    address: Annotated[
        str, typer.Option("--address", help="Address to listen on (loopback by default).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to serve /metrics on (0: any free port).")] = 9835,
    server: ServerOption = None,
    no_installed: Annotated[
        bool, typer.Option("--no-installed", help="Do not watch the serving units gpuprov installed.")
    ] = False,
) -> None:
    """Serve Prometheus metrics of the GPUs (labels gpu, uuid, name), clock event reasons, the applied
    profile's limit and gpuprov_profile_drift, and the servers; NVML failing mid-run is counted, not fatal."""
    import ipaddress

    from provision.errors import UsageError
    from provision.monitor.exporter import serve

    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise UsageError(f"--address {address!r}: expected an IP address (127.0.0.1, ::1, 0.0.0.0)") from None
    if not 0 <= port <= 65535:
        raise UsageError(f"--port {port}: expected 0-65535")
    with _monitor(server, installed=not no_installed) as mon:
        try:
            serve(
                mon,
                address=address,
                port=port,
                ready=lambda p: typer.echo(f"serving /metrics on {address}:{p}", err=True),
            )
        except OSError as exc:
            raise UsageError(f"cannot listen on {address}:{port}: {exc.strerror or exc}") from None
        except KeyboardInterrupt:
            pass
