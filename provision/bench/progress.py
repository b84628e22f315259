"""How a ``gpuprov bench`` run shows its progress on stderr (stdout stays the results, --json or not)."""

from __future__ import annotations

from typing import Any

import typer


class RunProgress:
    """Progress on stderr, always (stdout stays the results, --json or not): on a terminal a rich
    progress bar per concurrency level, otherwise a line when each level starts and ends."""

    def __init__(self, terminal: bool, monitor: Any) -> None:
        self.terminal = terminal
        self.monitor = monitor
        self._bar: Any = None
        self._tasks: dict[int, Any] = {}

    def __enter__(self) -> RunProgress:
        if self.terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            from provision.console import make_console

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=make_console(stderr=True),
                transient=True,
            )
            self._bar.__enter__()
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

    def message(self, text: str) -> None:
        from provision.console import printable

        line = f"bench: {printable(text)}"
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False)
        else:
            typer.echo(line, err=True)

    def update(self, concurrency: int, done: int, planned: int | None, elapsed_s: float) -> None:
        if self._bar is None:
            if done == 0:
                what = f"{planned} requests" if planned is not None else "requests for the --duration"
                self.message(f"concurrency {concurrency}: sending {what}")
            return
        if concurrency not in self._tasks:
            self._tasks[concurrency] = self._bar.add_task(f"concurrency {concurrency}", total=planned)
        self._bar.update(self._tasks[concurrency], completed=done, description=self._describe(concurrency))

    def _describe(self, concurrency: int) -> str:
        text = f"concurrency {concurrency}"
        readings = getattr(self.monitor, "readings", None)
        if readings:
            for g in readings[-1].gpus:
                util = "?" if g.utilization_gpu_pct is None else f"{g.utilization_gpu_pct}%"
                power = "?" if g.power_draw_w is None else f"{g.power_draw_w:.0f} W"
                temp = "?" if g.temperature_c is None else f"{g.temperature_c}°C"
                text += f"  GPU{g.index} {util} {power} {temp}"
        return text
