"""What is known before the load starts: the server answers at all (one clear line when it does not),
what it says about itself (engine, version, models), and a summary of this host's GPUs.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from provision.bench.client import Connection, Endpoint
from provision.engineflags import ENGINE_NAMES, LLAMA_CPP_ENGINE
from provision.errors import GpuprovError


class BenchError(GpuprovError):
    """The benchmark cannot start: server unreachable, or it rejects the request itself."""


def check_reachable(endpoint: Endpoint, timeout_s: float) -> None:
    """A TCP connection to the server, so "server down" is one clear line before anything runs."""
    try:
        with socket.create_connection((endpoint.host, endpoint.port), timeout=timeout_s):
            pass
    except socket.gaierror as exc:
        raise BenchError(f"cannot resolve {endpoint.host!r} ({exc.strerror or exc}): check the URL") from None
    except ConnectionRefusedError:
        raise BenchError(
            f"cannot connect to {endpoint.url}: connection refused — is the server running on port {endpoint.port}?"
        ) from None
    except TimeoutError:
        raise BenchError(f"cannot connect to {endpoint.url}: no answer within {timeout_s:g} s") from None
    except OSError as exc:
        raise BenchError(f"cannot connect to {endpoint.url}: {exc.strerror or exc}") from None


def server_info(endpoint: Endpoint, timeout_s: float) -> dict[str, Any]:
    """What the server says about itself; an engine is named only when it identifies itself.

    Each question is bounded by ``timeout_s`` as a whole; a server that does not answer the first
    one (GET /v1/models) in time is hung (or still loading): BenchError, nothing more is asked."""
    conn = Connection(endpoint, timeout_s=timeout_s, request_timeout_s=timeout_s)
    info: dict[str, Any] = {"url": endpoint.url, "engine": None, "engine_version": None, "models": []}
    listing = conn.get_json("/v1/models")
    if conn.last_get_timed_out:
        raise BenchError(
            f"{endpoint.url} accepted the connection but did not answer GET /v1/models within {timeout_s:g} s: "
            "is the server hung, or still loading its model?"
        )
    owners: set[str] = set()
    if isinstance(listing, dict) and isinstance(listing.get("data"), list):
        for item in listing["data"]:
            if isinstance(item, dict) and isinstance(item.get("id"), str):
                info["models"].append(item["id"])
                if isinstance(item.get("owned_by"), str):
                    owners.add(item["owned_by"])
    vllm = conn.get_json("/version")  # vLLM: {"version": "0.11.0"}
    ollama = conn.get_json("/api/version")  # Ollama: {"version": "0.12.3"}
    if "vllm" in owners and isinstance(vllm, dict):
        info["engine"], info["engine_version"] = "vllm", vllm.get("version")
    elif isinstance(ollama, dict) and isinstance(ollama.get("version"), str):
        info["engine"], info["engine_version"] = "ollama", ollama["version"]
    elif "llamacpp" in owners:  # what llama-server's /v1/models says (owned_by), not gpuprov's spelling
        info["engine"] = ENGINE_NAMES[LLAMA_CPP_ENGINE]
        props = conn.get_json("/props")  # llama-server: {"build_info": "b6869-ab3f5f0a", ...}
        if isinstance(props, dict) and isinstance(props.get("build_info"), str):
            info["engine_version"] = props["build_info"]
    elif "vllm" in owners:
        info["engine"] = "vllm"
    else:
        # llama-cpp-python's server (owned_by "me") is a FastAPI app titled "🦙 llama.cpp Python API"
        api = conn.get_json("/openapi.json")
        about = api.get("info") if isinstance(api, dict) else None
        if isinstance(about, dict) and "llama.cpp Python" in str(about.get("title", "")):
            info["engine"] = "llama-cpp-python"
            info["engine_version"] = about.get("version") if isinstance(about.get("version"), str) else None
    return info


def host_summary(backend_factory: Callable[[], Any]) -> dict[str, Any]:
    """Hostname, driver and each GPU's name and power limit, read once through the probe."""
    from provision.probe import probe_gpus

    summary: dict[str, Any] = {"hostname": socket.gethostname(), "driver_version": None, "gpus": []}
    try:
        driver, gpus = probe_gpus(backend_factory())
    except GpuprovError as exc:
        summary["nvml"] = str(exc)
        return summary
    summary["nvml"] = "ok" if driver.nvml.ok else driver.nvml.message
    summary["driver_version"] = driver.driver_version
    summary["cuda_driver_version"] = driver.cuda_driver_version
    summary["gpus"] = [
        {
            "index": g.index,
            "name": g.name,
            "vram_total_mib": g.vram_total_mib,
            "power_limit_w": g.power_limit_w,
            "power_default_limit_w": g.power_default_limit_w,
            "persistence_mode": g.persistence_mode,
        }
        for g in gpus
    ]
    return summary
