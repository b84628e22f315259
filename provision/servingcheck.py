"""doctor checks on the inference servers gpuprov set up (``Snapshot.host.servers``): a server that
other hosts can reach without an API key is a warning; gpuprov's Ollama drop-in on a host where Ollama is
not installed (no binary, no ``ollama.service``) is an error."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from provision.diagnosis import Finding, check
from provision.serving.units import OLLAMA_DOWNLOAD, exposure_remedy, ollama_missing
from provision.snapshot import Snapshot


def _loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@check
def exposed_servers(s: Snapshot) -> Iterable[Finding]:
    for server in s.host.servers:
        where = f"{server.host}:{server.port}"
        subject = server.unit
        if _loopback(server.host):
            yield Finding("serving.loopback", "ok", f"{server.unit} listens on {where} (this host only)", "", subject)
        elif server.api_key:
            yield Finding(
                "serving.exposed_with_key",
                "info",
                f"{server.unit} listens on {where}, reachable from other hosts; clients need its API key",
                "",
                subject,
            )
        else:
            yield Finding(
                "serving.exposed_no_key",
                "warn",
                f"{server.unit} listens on {where} without an API key: anyone who can reach this host can use it",
                exposure_remedy(server.engine),
                subject,
            )


@check
def engine_missing(s: Snapshot) -> Iterable[Finding]:
    """An applied Ollama profile leaves gpuprov's drop-in for ``ollama.service``: with Ollama gone (or never
    installed) there is no server to start."""
    for server in s.host.servers:
        if server.engine == "ollama" and server.engine_installed is False:
            yield Finding(
                "serving.engine_missing",
                "error",
                f"{server.unit} has gpuprov's drop-in, but {ollama_missing()}: nothing serves",
                f"install Ollama with its installer ({OLLAMA_DOWNLOAD}), then gpuprov apply again (or apply a "
                "profile without an Ollama server, which removes the drop-in)",
                server.unit,
            )
