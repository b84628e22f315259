"""``gpuprov wait-gpu``: wait until NVML sees the GPUs a server needs (a serving unit's ExecStartPre=)."""

from __future__ import annotations

from typing import Annotated

import typer

from provision.cli import app


@app.command("wait-gpu")
def wait_gpu(
    gpus: Annotated[
        str | None, typer.Option("--gpus", metavar="0,1", help="GPU indices to wait for (default: any GPU).")
    ] = None,
    timeout_s: Annotated[float, typer.Option("--timeout-s", help="Give up after this many seconds.")] = 120.0,
    interval_s: Annotated[float, typer.Option("--interval-s", help="Look again this often.")] = 1.0,
) -> None:
    """Exit 0 once the GPUs are ready (NVML up, the GPUs present, CUDA's device files there); exit 1
    with the reason when they are not ready within --timeout-s, so systemd fails and retries the start."""
    from provision.errors import UsageError
    from provision.gpuready import interval_problem, wait_for_gpus

    indices: tuple[int, ...] = ()
    if gpus:
        try:
            indices = tuple(int(x) for x in gpus.split(","))
        except ValueError:
            raise UsageError(f"--gpus {gpus!r}: expected GPU indices like 0 or 0,1") from None
        if any(i < 0 for i in indices):
            raise UsageError(f"--gpus {gpus!r}: GPU indices are 0 or more")
    problem = interval_problem(timeout_s, interval_s)
    if problem is not None:
        raise UsageError(problem)
    typer.echo(wait_for_gpus(indices, timeout_s=timeout_s, interval_s=interval_s))
