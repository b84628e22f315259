"""``gpuprov compat check|plan|refresh``: version compatibility of driver, CUDA, GPU and Python packages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from provision.cli import app

if TYPE_CHECKING:
    from provision.compat.target import Target
    from provision.snapshot import PythonEnv

compat_app = typer.Typer(
    name="compat",
    help="Is driver / CUDA / GPU / torch / vLLM / flashinfer consistent? What set would be?",
    no_args_is_help=True,
)
app.add_typer(compat_app, name="compat")

DriverOpt = Annotated[
    str | None, typer.Option("--driver", metavar="VERSION", help="What-if driver version (e.g. 560.35.03).")
]
GpuOpt = Annotated[
    str | None, typer.Option("--gpu", metavar="NAME", help='What-if GPU model (e.g. "RTX 4090 Laptop").')
]
CcOpt = Annotated[str | None, typer.Option("--cc", metavar="X.Y", help="What-if compute capability (e.g. 8.9).")]
FromOpt = Annotated[
    Path | None,
    typer.Option("--from", metavar="FILE", help="Start from a saved snapshot instead of probing this host."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _target(
    from_file: Path | None,
    driver: str | None,
    gpu: str | None,
    cc: str | None,
    packages: list[str] | None,
    env: PythonEnv | None = None,
) -> Target:
    """What to check: a snapshot (``--from``, this host's probe, or nothing for a pure what-if), its Python
    packages replaced by ``env`` (what ``--python`` has installed), then the what-if flags on top."""
    from provision import snapshotfile
    from provision.compat.target import Target, apply_overrides, target_from_snapshot

    if from_file is not None:
        snap = snapshotfile.load(from_file)
    elif driver is not None or gpu is not None or cc is not None or packages:
        snap = None  # a pure what-if: nothing from this host
    else:
        from provision.probe import probe

        snap = probe(python_stack=env is None)
    if env is not None:
        from provision.compat.installed import installed_target
        from provision.snapshot import Snapshot

        base = installed_target(env, snap or Snapshot())
    else:
        base = target_from_snapshot(snap) if snap is not None else Target()
    return apply_overrides(base, driver=driver, gpu=gpu, cc=cc, packages=packages)


@compat_app.command("check")
def check_cmd(
    driver: DriverOpt = None,
    gpu: GpuOpt = None,
    cc: CcOpt = None,
    with_: Annotated[
        list[str] | None,
        typer.Option(
            "--with",
            metavar="NAME[EXTRAS]==VERSION",
            help='What-if package version, extras judged by (repeatable): --with "vllm[flashinfer]==0.10.2".',
        ),
    ] = None,
    from_file: FromOpt = None,
    python: Annotated[
        str | None,
        typer.Option(
            "--python",
            metavar="PATH",
            help="Check what is installed in this interpreter's environment (e.g. /opt/gpuprov/envs/vllm/bin/python), "
            "read from its metadata, never imported; the driver and GPUs stay this host's (or --from's).",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check this host (or --from SNAPSHOT, or what-if flags) against the compatibility matrix.

    Flags override what the snapshot says. Exit code: 0 ok, 1 incompatible, 3 unknown (a version the
    matrix does not cover), 2 bad usage (also: --python is not an interpreter whose packages can be read).
    """
    import dataclasses

    from provision.compat.verdict import check
    from provision.errors import UsageError

    env = None
    if python is not None:
        from provision.compat.installed import InterpreterError, read_installed

        if "/" not in python:
            import shutil

            python = shutil.which(python) or python  # a command name: the interpreter PATH gives
        try:
            env = read_installed(python)  # first: a bad --python is refused before probing anything
        except InterpreterError as exc:
            raise UsageError(f"--python {exc}") from None
    report = check(_target(from_file, driver, gpu, cc, with_, env))
    if env is not None:
        report = dataclasses.replace(report, interpreter=env.interpreter or python, python_version=env.python_version)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        from rich.markup import escape
        from rich.table import Table

        from provision.console import make_console

        console = make_console()
        if report.interpreter is not None:
            version = f" (Python {report.python_version})" if report.python_version else ""
            console.print(escape(f"installed in {report.interpreter}{version}"), style="dim")
        if report.problems:
            table = Table("", "pair", "why", "fix", "source", show_lines=True)
            mark = {"incompatible": "[red]✗[/]", "unknown": "[yellow]?[/]", "warning": "[yellow]![/]"}
            for p in report.problems:
                table.add_row(mark[p.severity], escape(p.pair), escape(p.reason), escape(p.fix), escape(p.source))
            console.print(table)
        for line in report.skipped:
            console.print(f"[dim]not checked: {escape(line)}[/]")
        for line in report.stale:
            console.print(f"[yellow]{escape(line)}[/]")
        age = report.matrix
        if age.get("refreshed"):
            overlay = f", your overlay {age['overlay']} on top" if age.get("overlay") else ""
            console.print(
                escape(f"matrix: index read {age['refreshed']} ({age['age_days']} day(s) ago){overlay}"), style="dim"
            )
        colour = {"ok": "green", "unknown": "yellow", "incompatible": "red"}[report.verdict]
        console.print(f"[{colour}]{report.verdict}[/] ({len(report.checked)} pair(s) checked)")
    raise typer.Exit(report.exit_code)


@compat_app.command("plan")
def plan_cmd(
    engine: Annotated[str, typer.Option("--engine", help="vllm, llama-cpp or ollama.")] = "vllm",
    driver: DriverOpt = None,
    gpu: GpuOpt = None,
    cc: CcOpt = None,
    from_file: FromOpt = None,
    no_flashinfer: Annotated[
        bool, typer.Option("--no-flashinfer", help="vLLM: leave out flashinfer where it is optional.")
    ] = False,
    fmt: Annotated[
        str, typer.Option("--format", help="table, constraints (uv pip install -c) or uv-sources ([tool.uv]).")
    ] = "table",
    as_json: JsonOpt = False,
) -> None:
    """The newest consistent set of packages for this host (or what-if flags) and an engine.

    Exit code: 0 a plan, 1 nothing in the matrix fits the GPU, 2 bad usage. A driver the plan needs, and
    the check's warnings, are in every format (comment lines in constraints and uv-sources).
    """
    from provision.compat.plan import plan
    from provision.errors import UsageError

    if fmt not in ("table", "constraints", "uv-sources"):
        raise UsageError(f"--format {fmt!r}: choose table, constraints or uv-sources")
    result = plan(_target(from_file, driver, gpu, cc, None), engine, flashinfer=not no_flashinfer)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    elif fmt == "constraints":
        typer.echo(result.constraints(), nl=False)
    elif fmt == "uv-sources":
        typer.echo(result.uv_sources(), nl=False)
    else:
        from rich.markup import escape
        from rich.table import Table

        from provision.console import make_console

        console = make_console()
        table = Table("package", "version", "from", title=f"compat plan: {engine}")
        for p in result.pins:
            table.add_row(p.name, p.version, p.index or "PyPI")
        if result.pins:
            console.print(table)
        if result.cuda:
            variant = f" ({result.variant})" if result.variant else ""
            console.print(f"CUDA runtime: {result.cuda}{variant}")
        if result.driver_needed:
            console.print(f"[red]driver needed: ≥ {result.driver_needed}[/]")
        for name, extras in result.extras.items():
            console.print(escape(f"assumes the extra {name}[{','.join(extras)}]: install {name}[{','.join(extras)}]"))
        for key, value in result.build_env.items():
            console.print(escape(f'build from source: {key}="{value}"'))
        for note in result.notes:
            console.print(f"[dim]{escape(note)}[/]")
        for line in result.warnings(driver=False):  # the driver line is above
            console.print(f"[yellow]{escape(line)}[/]")


@compat_app.command("refresh")
def refresh_cmd(
    package: Annotated[
        list[str] | None,
        typer.Option("--package", help="vllm, xformers, flashinfer-python (repeatable; default: all)."),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", metavar="VERSION", help="Skip older releases.")] = None,
    index: Annotated[str, typer.Option("--index", help="PEP 691 simple index.")] = "https://pypi.org/simple",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", metavar="FILE", help="Write the TOML here (default: stdout).")
    ] = None,
    user: Annotated[
        bool,
        typer.Option(
            "--user",
            help="Read releases newer than the shipped matrix into your overlay "
            "($XDG_CACHE_HOME/gpuprov/compat-overlay.toml), which compat check and plan read on top of it.",
        ),
    ] = False,
) -> None:
    """Regenerate the vLLM / xformers / flashinfer → torch rows from the index's wheel METADATA.

    Maintainers: prints TOML tables to review and paste into provision/data/compat.toml. Users: --user writes
    the releases newer than the shipped matrix into an overlay; without network it keeps the overlay it has
    and says so (exit 1).
    """
    import sys

    from packaging.version import InvalidVersion, Version

    from provision.compat.refresh import PACKAGES, refresh, render_rows
    from provision.errors import UsageError

    if user:
        if output is not None or since is not None:
            raise UsageError("--user writes your overlay from what the shipped matrix lacks: drop --output/--since")
        _refresh_user(package, index)
        return

    try:
        Version(since) if since else None
    except InvalidVersion:
        raise UsageError(f"--since {since!r} is not a version (e.g. 0.10.0)") from None
    packages = package or list(PACKAGES)
    unknown = [p for p in packages if p not in PACKAGES]
    if unknown:
        raise UsageError(f"--package {unknown[0]!r}: choose from {', '.join(PACKAGES)}")
    parts = []
    for name in packages:
        rows = refresh(name, since=since, index=index, progress=lambda f: print(f"  {f}", file=sys.stderr))
        parts.append(render_rows(name, rows))
    text = "\n".join(parts)
    if output is None:
        typer.echo(text, nl=False)
    else:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None


def _refresh_user(packages: list[str] | None, index: str) -> None:
    """``compat refresh --user``: the overlay of releases newer than the shipped matrix, offline-safe."""
    import sys

    from packaging.version import Version

    from provision.compat.matrix import parse_matrix
    from provision.compat.overlay import OverlayError, overlay_path, read_overlay, write_overlay
    from provision.compat.refresh import PACKAGES, RefreshError, refresh, render_rows
    from provision.errors import UsageError

    names = packages or list(PACKAGES)
    unknown = [p for p in names if p not in PACKAGES]
    if unknown:
        raise UsageError(f"--package {unknown[0]!r}: choose from {', '.join(PACKAGES)}")
    path = overlay_path()
    if path is None:
        raise UsageError("GPUPROV_COMPAT_OVERLAY=none turns the overlay off: unset it to write one")
    try:
        kept = read_overlay(path)
    except OverlayError:
        kept = None  # a broken overlay is replaced by a good one, never read
    from importlib import resources

    shipped = parse_matrix(resources.files("provision").joinpath("data/compat.toml").read_text(encoding="utf-8"))
    rows = {}
    try:
        for name in names:
            newest = shipped.newest(name)
            since = str(newest) if newest is not None else None
            rows[name] = [
                r
                for r in refresh(name, since=since, index=index, progress=lambda f: print(f"  {f}", file=sys.stderr))
                if newest is None or Version(r.version) > newest
            ]
    except RefreshError as exc:
        what = (
            f"kept your overlay {path} (index read {kept.refreshed}, {kept.rows} row(s))"
            if kept
            else "no overlay: the shipped matrix is used as it is"
        )
        typer.echo(f"gpuprov: cannot read the index ({exc}); {what}", err=True)
        raise typer.Exit(1) from None
    write_overlay(rows, render_rows, index=index, path=path)
    added = ", ".join(f"{n} {', '.join(r.version for r in rs)}" for n, rs in rows.items() if rs)
    typer.echo(
        f"wrote {path}: "
        + (f"newer than the shipped matrix: {added}" if added else "nothing newer than the shipped matrix")
    )
