"""``gpuprov build llama-cpp``: llama-cpp-python compiled for the GPUs that are here, then verified."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from provision.cli import app
from provision.engineflags import ENGINE_WORDS, LLAMA_CPP_ENGINE

build_app = typer.Typer(help="Build inference libraries for the GPUs that are actually here.", no_args_is_help=True)
app.add_typer(build_app, name="build")


@build_app.command(ENGINE_WORDS[LLAMA_CPP_ENGINE])
def llama_cpp(
    cpu: Annotated[bool, typer.Option("--cpu", help="CPU-only build (machines without a GPU).")] = False,
    portable: Annotated[
        bool,
        typer.Option(
            "--portable",
            help="CPU code for any x86-64 (GGML_NATIVE=off), not this CPU's instruction set: for images run on "
            "other machines, and VMs that advertise instructions they do not enable (AMX under some hypervisors).",
        ),
    ] = False,
    arch: Annotated[
        list[str] | None,
        typer.Option("--arch", help="CUDA architectures instead of the detected ones: 89, 86,89, sm_90, 8.9."),
    ] = None,
    nvcc: Annotated[str | None, typer.Option("--nvcc", metavar="PATH", help="Use this nvcc.")] = None,
    version: Annotated[
        str | None, typer.Option("--version", help="llama-cpp-python version (default: newest).")
    ] = None,
    source: Annotated[
        str | None, typer.Option("--source", metavar="SDIST", help="Build from a local sdist or source directory.")
    ] = None,
    wheelhouse: Annotated[
        str | None,
        typer.Option("--wheelhouse", metavar="DIR", help="Offline: take build dependencies from DIR, no index."),
    ] = None,
    python: Annotated[
        str | None, typer.Option("--python", metavar="PATH", help="Install into this interpreter's environment.")
    ] = None,
    jobs: Annotated[
        int | None, typer.Option("-j", "--jobs", min=1, help="Parallel jobs (default: cores, bounded by memory).")
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from", metavar="FILE", help="Plan for a saved snapshot (implies --dry-run).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the environment and command; build nothing.")
    ] = False,
    log: Annotated[
        Path | None, typer.Option("--log", metavar="FILE", help="Build log (default: ~/.local/state/gpuprov/builds/).")
    ] = None,
    smoke_model: Annotated[
        str | None, typer.Option("--smoke-model", metavar="GGUF", help="After the build, run one completion with it.")
    ] = None,
    no_verify: Annotated[bool, typer.Option("--no-verify", help="Skip the checks after the build.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable plan and result.")] = False,
) -> None:
    """Compile llama-cpp-python for the detected GPUs (or --arch / --cpu) and verify it.

    Exit code: 0 built and verified (or dry run), 1 refused, failed or a check failed, 2 bad usage.
    """
    import os

    from provision import llama_build as lb
    from provision import snapshotfile
    from provision.errors import UsageError

    archs = lb.parse_arch_option(arch) if arch else None
    target = python or lb.current_python()
    if python is not None and not Path(python).is_file():
        raise UsageError(f"--python {python}: no such file")
    if source is not None and not Path(source).exists():
        raise UsageError(f"--source {source}: no such file or directory")
    if smoke_model is not None and not Path(smoke_model).is_file():
        raise UsageError(f"--smoke-model {smoke_model}: no such file")
    log_path = log or lb.default_log_path()
    if not dry_run and from_file is None:
        lb.check_log_path(log_path)  # before anything runs: a log that cannot be written is bad usage (exit 2)
    if from_file is not None:
        snap = snapshotfile.load(from_file)
        dry_run = True
        mem_available = snap.host.ram_mib  # that host's memory, not ours
    else:
        from provision import probe

        snap = probe.probe(python=python)
        mem_available = lb.mem_available_mib()
    plan = lb.plan_build(
        snap,
        python=target,
        cpu=cpu,
        archs=archs,
        nvcc=nvcc,
        version=version,
        source=source,
        jobs=jobs,
        mem_available=mem_available,
        environ=dict(os.environ),
        wheelhouse=wheelhouse,
        extra_cmake_args=list(lb.PORTABLE_CMAKE_ARGS) if portable else None,
    )
    if dry_run:
        if as_json:
            typer.echo(json.dumps({"plan": plan.to_dict()}, indent=2))
        else:
            _print_plan(plan)
            typer.echo("\n# dry run: to build, run the line above or drop --dry-run")
            typer.echo(plan.shell())
        raise typer.Exit(0)

    if plan.host_compiler is None:
        raise lb.BuildError(lb.NO_COMPILER)
    if not as_json:
        _print_plan(plan)
        typer.echo(f"log: {log_path}", err=True)
    result = _run_with_progress(lb, plan, log_path, quiet=as_json)
    checks = [] if (no_verify or not result.ok) else lb.verify_build(plan, smoke_model=smoke_model)
    ok = result.ok and all(c.ok is not False for c in checks)
    if ok and not no_verify:
        lb.record_build(plan, result)  # a later apply of a profile sees it is already built as asked
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "plan": plan.to_dict(),
                    "result": result.__dict__,
                    "checks": [c.__dict__ for c in checks],
                    "ok": ok,
                },
                indent=2,
            )
        )
        raise typer.Exit(0 if ok else 1)
    if not result.ok:
        typer.echo(f"build failed at {result.failed_step} after {result.duration_s:.0f} s (exit {result.returncode})")
        for line in result.error_lines:
            typer.echo(f"  {line}")
        typer.echo(f"full log: {result.log_path}")
        raise typer.Exit(1)
    typer.echo(f"built in {result.duration_s:.0f} s")
    for c in checks:
        mark = {True: "pass", False: "FAIL", None: "skip"}[c.ok]
        typer.echo(f"  {mark:4}  {c.name}: {c.detail}")
    raise typer.Exit(0 if ok else 1)


def _print_plan(plan) -> None:  # type: ignore[no-untyped-def]
    typer.echo(f"llama-cpp-python {plan.version or '(newest)'} → {plan.python}")
    if plan.cpu:
        typer.echo("  CPU build")
    else:
        typer.echo(f"  architectures: {', '.join('sm_' + a for a in plan.archs)} ({plan.arch_reason})")
        typer.echo(f"  nvcc: {plan.nvcc} (CUDA {plan.cuda_version}); host compiler: {plan.host_compiler or 'default'}")
    typer.echo(f"  CMAKE_ARGS: {plan.env['CMAKE_ARGS']}")
    typer.echo(f"  jobs: {plan.jobs}")
    for note in plan.notes:
        typer.echo(f"  note: {note}")


def _run_with_progress(lb, plan, log_path: Path, *, quiet: bool):  # type: ignore[no-untyped-def]
    if quiet:
        return lb.run_build(plan, log_path)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        transient=True,
    ) as progress:
        task = progress.add_task("building", total=None)

        def on_progress(done: int, total: int, line: str) -> None:
            progress.update(task, completed=done, total=total)

        return lb.run_build(plan, log_path, on_progress=on_progress)
