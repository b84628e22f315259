"""What sampling costs: CPU seconds per ``gpuprov monitor`` sample and per ``gpuprov exporter`` scrape,
beside a bare NVML read loop, all in this one process on the same replayed GPUs.

There is no ``nvidia-smi`` on a replay, so the baseline is the cheapest NVML reader possible: for each
GPU, a handle and the six moving values the monitor shows (utilisation, memory, power, temperature,
clock event reasons, SM clock), straight calls on the backend. The three are alternated in rounds
(the machine is shared and noisy) and the medians of the per-round CPU times are compared; the ratio to
the bare loop is the overhead of gpuprov's readers (probe's error handling, the profile reference,
the view's dict, Prometheus text).

    .venv/bin/python benchmarks/monitor_cost.py [--snapshot rtx4090x8] [--rounds 7] [--n 300]

Prints a Markdown table (per-call CPU time in microseconds, ratio to the bare loop).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prometheus_client import generate_latest  # noqa: E402

from provision.monitor.exporter import registry_for  # noqa: E402
from provision.monitor.sampling import Monitor  # noqa: E402
from provision.replay import ReplayNvml  # noqa: E402


def bare_loop(nvml: ReplayNvml) -> None:
    for i in range(nvml.nvmlDeviceGetCount()):
        h = nvml.nvmlDeviceGetHandleByIndex(i)
        for fn, args in (
            ("nvmlDeviceGetUtilizationRates", ()),
            ("nvmlDeviceGetMemoryInfo", ()),
            ("nvmlDeviceGetPowerUsage", ()),
            ("nvmlDeviceGetTemperature", (0,)),
            ("nvmlDeviceGetCurrentClocksEventReasons", ()),
            ("nvmlDeviceGetClockInfo", (1,)),
        ):
            with contextlib.suppress(nvml.NVMLError):
                getattr(nvml, fn)(h, *args)


def cpu_per_call(fn, n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        fn()
    return (time.process_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--snapshot", default="rtx2080x2.published.json")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    data = json.loads((ROOT / "tests/data/snapshots" / args.snapshot).read_text())
    for gpu in data["gpus"]:  # moving values the published reading lacks, so every reader reads them all
        gpu.update(utilization_gpu_pct=50, sm_clock_mhz=1500, memory_clock_mhz=7000)
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "replay.json"
        state.write_text(json.dumps(data))
        bare = ReplayNvml.from_state_file(state)
        bare.nvmlInit()
        mon = Monitor(ReplayNvml.from_state_file(state), state_dir=Path(tmp) / "state").__enter__()
        registry, _ = registry_for(mon)
        readers = {
            "bare NVML read loop": lambda: bare_loop(bare),
            "gpuprov monitor sample": mon.sample,
            "gpuprov exporter scrape": lambda: generate_latest(registry),
        }
        times: dict[str, list[float]] = {k: [] for k in readers}
        for _ in range(args.rounds):
            for name, fn in readers.items():
                times[name].append(cpu_per_call(fn, args.n))
        mon.__exit__(None, None, None)
    base = statistics.median(times["bare NVML read loop"])
    gpus = len(data["gpus"])
    print(f"{args.snapshot}: {gpus} GPUs (replayed), {args.rounds} rounds x {args.n} calls, medians of CPU time\n")
    print("| reader | CPU per call (µs) | per GPU (µs) | vs bare loop |")
    print("| --- | --- | --- | --- |")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"| {name} | {med * 1e6:.0f} | {med * 1e6 / gpus:.0f} | {med / base:.1f}x |")


if __name__ == "__main__":
    main()
