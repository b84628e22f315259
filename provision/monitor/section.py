"""The ``monitoring`` profile section: ``monitoring: {exporter: {port: 9835, address: 127.0.0.1}}`` makes
apply write and start ``gpuprov-exporter.service``, rendered from ``templates/gpuprov-exporter.service.j2``
by the one renderer (:func:`provision.render.render`), with the serving units' GPU-ready head (ordering
after the driver, ``ExecStartPre=gpuprov wait-gpu``) and their sandbox include. The exporter runs as a
dynamic user, reads the GPUs and gpuprov's state (the applied profile), writes nothing, listens on
loopback unless the profile says otherwise. A profile without the section removes a unit an earlier one
installed.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from provision.profiles.schema import SectionType, _int, _mapping, _text, register_section

if TYPE_CHECKING:
    from provision.plantypes import Desired, HostState
    from provision.profiles import Profile
    from provision.snapshot import Snapshot

UNIT = "gpuprov-exporter.service"
UNIT_FILE = f"/etc/systemd/system/{UNIT}"
DEFAULT_PORT = 9835
DEFAULT_ADDRESS = "127.0.0.1"
#: seconds ExecStartPre waits for the GPUs (as the serving units' wait-gpu)
WAIT_GPU_S = 120


@dataclass(frozen=True)
class MonitoringSection:
    #: None: no exporter
    exporter_port: int | None = None
    exporter_address: str = DEFAULT_ADDRESS


def _parse(value: Any, where: Any) -> MonitoringSection:
    data = _mapping(value, where, ("exporter",))
    exporter = data.get("exporter")
    if exporter is None or exporter is False:
        return MonitoringSection()
    if exporter is True:
        exporter = {}
    ex = _mapping(exporter, where["exporter"], ("port", "address"))
    port = (
        _int(ex["port"], where["exporter"]["port"], "a port", 1, 65535) if ex.get("port") is not None else DEFAULT_PORT
    )
    address = DEFAULT_ADDRESS
    if ex.get("address") is not None:
        address = _text(ex["address"], where["exporter"]["address"], "an IP address")
        try:
            ipaddress.ip_address(address)
        except ValueError:
            raise where["exporter"]["address"].error(
                f"expected an IP address like 127.0.0.1, got {address!r}"
            ) from None
    return MonitoringSection(port, address)


def _to_dict(s: MonitoringSection) -> dict[str, Any]:
    if s.exporter_port is None:
        return {"exporter": None}
    return {"exporter": {"port": s.exporter_port, "address": s.exporter_address}}


def render_unit(profile_name: str, section: MonitoringSection, *, python: str, binds: list[str] | None = None) -> str:
    """``binds``: home directories gpuprov's interpreter lives in, bound read-only past ProtectHome= (as for
    the boot unit: :func:`provision.serving.sandbox.gpuprov_sandbox`)."""
    from provision.render import render

    argv = [
        python,
        "-m",
        "provision",
        "exporter",
        "--address",
        section.exporter_address,
        "--port",
        str(section.exporter_port),
    ]
    return render(
        "gpuprov-exporter.service.j2",
        {
            "profile": profile_name,
            "argv": argv,
            "wait_argv": [python, "-m", "provision", "wait-gpu", "--timeout-s", str(WAIT_GPU_S)],
            "start_timeout_s": WAIT_GPU_S + 30,
            "hardening": {
                "protect_home": "tmpfs" if binds else "yes",
                "bind_ro": list(binds or []),
                "bind_rw": [],
                "read_write": [],
            },
        },
    )


def plan_monitoring(desired: Desired, snapshot: Snapshot, profile: Profile, host: HostState) -> None:
    """The section's plan hook: the exporter's unit written, enabled and started; or, without the section,
    one an earlier profile installed disabled, stopped and removed."""
    from provision.plantypes import FileTarget, UnitTarget

    section = profile.sections.get("monitoring")
    if section is not None and section.exporter_port is not None:
        binds: list[str] = []
        if host.sandbox is not None:  # what read_host_state gathered (the boot unit's sandbox reads the same)
            from provision.serving.sandbox import gpuprov_sandbox

            binds, refusals = gpuprov_sandbox(UNIT, host.python, host.sandbox)
            for line in refusals:
                desired.refusals.append(line)
                desired.notes.append(f"WARNING: {line} (apply refuses this)")
        text = render_unit(profile.name, section, python=host.python, binds=binds)
        where = f"{section.exporter_address}:{section.exporter_port}"
        desired.files.append(FileTarget(UNIT_FILE, text, "0644", f"Prometheus exporter on {where}"))
        desired.units.append(UnitTarget(UNIT, True, now=host.systemd_running, note=f"gpuprov exporter on {where}"))
        if not ipaddress.ip_address(section.exporter_address).is_loopback:
            desired.notes.append(
                f"the exporter listens on {section.exporter_address}: other hosts can read this host's GPU "
                "metrics (no authentication); firewall the port or keep 127.0.0.1 behind a proxy"
            )
        return
    if not host.known:
        return
    state = host.units.get(UNIT)
    if state is not None and (state.path is not None or state.enabled):
        why = f"no longer used (profile {profile.name} has no monitoring.exporter)"
        desired.units.append(UnitTarget(UNIT, False, now=True, note=f"{why}: disabled and stopped"))
    file_state = host.files.get(UNIT_FILE)
    if file_state is not None and file_state.content is not None:
        desired.files.append(FileTarget(UNIT_FILE, None, "0644", "the exporter's unit: removed"))


register_section("monitoring", SectionType(_parse, _to_dict, plan=plan_monitoring))


def with_exporter(profile: Profile, port: int, address: str = DEFAULT_ADDRESS) -> Profile:
    """``profile`` with its ``monitoring.exporter`` set (the fleet's ``gpuprov_gpu_exporter_port``: every host
    gets the exporter whatever its profile says); validated as if the profile said it."""
    import dataclasses

    from provision.profiles.schema import _Where

    section = _parse(
        {"exporter": {"port": port, "address": address}},
        _Where(f"profile {profile.name} with the fleet's exporter", "monitoring"),
    )
    return dataclasses.replace(profile, sections={**profile.sections, "monitoring": section})
