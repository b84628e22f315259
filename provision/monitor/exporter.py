"""``gpuprov exporter``: the monitor's readings as Prometheus metrics (``prometheus_client``).

Each scrape takes one :class:`~provision.monitor.sampling.Monitor` sample, so what Prometheus stores is
what ``gpuprov monitor`` shows: per-GPU gauges labelled ``gpu``, ``uuid``, ``name``; the clock event
reasons as one gauge labelled ``reason`` (1 active, 0 not); the applied profile's power limit and
``gpuprov_profile_drift`` (1: the enforced limit is not the profile's). A GPU that stops answering
(fell off the bus, driver reloaded) turns ``gpuprov_gpu_up`` to 0 and its NVML errors are counted in
``gpuprov_probe_errors_total``; a scrape never fails because NVML did.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from provision.monitor.sampling import Monitor
from provision.nvmlcodes import CLOCK_EVENT_REASONS

DEFAULT_PORT = 9835
DEFAULT_ADDRESS = "127.0.0.1"
LABELS = ("gpu", "uuid", "name")

#: (metric name, help, sample key, scale to the metric's unit)
GAUGES = (
    ("gpuprov_gpu_utilization_ratio", "GPU busy share over NVML's last period (0-1).", "utilization_gpu_pct", 0.01),
    ("gpuprov_gpu_memory_used_bytes", "VRAM in use.", "vram_used_mib", 2**20),
    ("gpuprov_gpu_memory_total_bytes", "VRAM size.", "vram_total_mib", 2**20),
    ("gpuprov_gpu_power_draw_watts", "Power draw.", "power_draw_w", 1),
    ("gpuprov_gpu_power_limit_watts", "Power limit the driver enforces.", "power_limit_w", 1),
    ("gpuprov_gpu_temperature_celsius", "GPU core temperature.", "temperature_c", 1),
    ("gpuprov_gpu_temperature_slowdown_celsius", "Where the GPU slows down.", "temperature_slowdown_c", 1),
    ("gpuprov_gpu_temperature_margin_celsius", "Degrees left before slowdown (T.Limit).", "temperature_margin_c", 1),
    ("gpuprov_gpu_sm_clock_hertz", "SM clock.", "sm_clock_mhz", 1_000_000),
    ("gpuprov_gpu_memory_clock_hertz", "Memory clock.", "memory_clock_mhz", 1_000_000),
    ("gpuprov_gpu_pcie_link_width", "PCIe link width in lanes.", "pcie_width", 1),
    ("gpuprov_gpu_pcie_link_generation", "PCIe link generation.", "pcie_generation", 1),
)


class MonitorCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor
        self._lock = threading.Lock()  # one NVML reading at a time, whatever the scrape concurrency
        self.collect_failures = 0

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            try:
                sample = self.monitor.sample().to_dict()
            except Exception:  # a bindings bug must not turn the scrape into a 500
                self.collect_failures += 1
                sample = {"gpus": [], "servers": []}
            yield from self._metrics(sample)

    def _metrics(self, sample: dict[str, Any]) -> Iterator[Metric]:
        up = GaugeMetricFamily("gpuprov_gpu_up", "1 while the GPU answers NVML, 0 once it is lost.", labels=LABELS)
        gauges = {name: GaugeMetricFamily(name, doc, labels=LABELS) for name, doc, _, _ in GAUGES}
        reasons = GaugeMetricFamily(
            "gpuprov_gpu_clock_event_reason",
            "1 while the clock event reason holds clocks back.",
            labels=(*LABELS, "reason"),
        )
        profile_limit = GaugeMetricFamily(
            "gpuprov_profile_power_limit_watts",
            "The applied profile's power limit for this GPU.",
            labels=(*LABELS, "profile"),
        )
        drift = GaugeMetricFamily(
            "gpuprov_profile_drift",
            "1 when the GPU's enforced power limit is not the applied profile's.",
            labels=(*LABELS, "profile"),
        )
        for g in sample["gpus"]:
            labels = [str(g["index"]), g.get("uuid") or "", g.get("name") or ""]
            up.add_metric(labels, 0.0 if g["lost"] else 1.0)
            if g["lost"]:
                continue
            for name, _, key, scale in GAUGES:
                if g.get(key) is not None:
                    gauges[name].add_metric(labels, float(g[key]) * scale)
            active = set(g["clock_event_reasons"])
            for reason in CLOCK_EVENT_REASONS.values():
                reasons.add_metric([*labels, reason], 1.0 if reason in active else 0.0)
            ref = g.get("profile")
            if ref and ref.get("power_limit_w") is not None:
                profile_limit.add_metric([*labels, ref["name"]], float(ref["power_limit_w"]))
                drift.add_metric([*labels, ref["name"]], 1.0 if g["drift"] else 0.0)
        yield up
        yield from gauges.values()
        yield reasons
        yield profile_limit
        yield drift
        errors = CounterMetricFamily(
            "gpuprov_probe_errors", "NVML calls that failed while sampling.", labels=("gpu", "field")
        )
        for (index, fld), count in sorted(self.monitor.errors.items()):
            errors.add_metric([str(index), fld], float(count))
        yield errors
        xid = CounterMetricFamily(
            "gpuprov_gpu_xid_errors",
            "Xid errors NVML reported (events) since the exporter started.",
            labels=(*LABELS, "xid"),
        )
        for g in sample["gpus"]:
            for code, count in (g.get("xid_errors") or {}).items():
                xid.add_metric([str(g["index"]), g.get("uuid") or "", g.get("name") or "", code], float(count))
        yield xid
        nvml_up = GaugeMetricFamily("gpuprov_nvml_up", "1 when NVML started and sees GPUs.")
        nvml_up.add_metric([], 1.0 if self.monitor.status == "ok" else 0.0)
        yield nvml_up
        yield from self._servers(sample["servers"])

    @staticmethod
    def _servers(servers: list[dict[str, Any]]) -> Iterator[Metric]:
        labels = ("url", "engine")
        up = GaugeMetricFamily("gpuprov_server_up", "1 while the inference server answers.", labels=labels)
        running = GaugeMetricFamily("gpuprov_server_requests_running", "Requests being served.", labels=labels)
        waiting = GaugeMetricFamily("gpuprov_server_requests_waiting", "Requests queued.", labels=labels)
        kv = GaugeMetricFamily("gpuprov_server_kv_cache_usage_ratio", "KV-cache in use (0-1).", labels=labels)
        for s in servers:
            key = [s["url"], s["engine"]]
            up.add_metric(key, 1.0 if s["up"] else 0.0)
            for family, field_name, scale in (
                (running, "requests_running", 1),
                (waiting, "requests_waiting", 1),
                (kv, "kv_cache_used_pct", 0.01),
            ):
                if s.get(field_name) is not None:
                    family.add_metric(key, float(s[field_name]) * scale)
        yield from (up, running, waiting, kv)


def registry_for(monitor: Monitor) -> tuple[CollectorRegistry, MonitorCollector]:
    registry = CollectorRegistry(auto_describe=False)
    collector = MonitorCollector(monitor)
    registry.register(collector)
    return registry, collector


def serve(monitor: Monitor, *, address: str = DEFAULT_ADDRESS, port: int = DEFAULT_PORT, ready: Any = None) -> None:
    """Serve /metrics until interrupted. ``ready``: called with the bound port once listening."""
    from prometheus_client import start_http_server

    registry, _ = registry_for(monitor)
    server, thread = start_http_server(port, addr=address, registry=registry)
    if ready is not None:
        ready(server.server_address[1])
    try:
        thread.join()
    finally:
        server.shutdown()
