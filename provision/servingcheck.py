"""doctor checks on the inference servers gpuprov set up (``Snapshot.host.servers``): a server that
other hosts can reach without an API key is a warning."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from provision.diagnosis import Finding, check
from provision.serving.units import exposure_remedy
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
