#!/usr/bin/python
# ruff: noqa: E402  (Ansible module layout: DOCUMENTATION/RETURN come before the imports)
"""Ansible module: enable/disable a systemd unit, online with systemctl or offline where systemd is not PID 1."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpuprov_unit
short_description: Enable or disable a systemd unit, also on hosts and image trees without a running systemd
description:
  - Where systemd is PID 1 (and I(root) is C(/)), runs C(systemctl enable) / C(disable), with C(--now) when
    I(now) is true, after a C(daemon-reload).
  - >-
    Elsewhere (containers, chroots, image builds, CI) does what C(systemctl --root=ROOT enable) does: creates
    the C([Install]) symlinks under C(/etc/systemd/system/*.wants/). Nothing is started, and the result says so.
  - Before the first change, the unit's previous enablement is recorded for C(gpuprov revert).
options:
  name:
    description: Unit name, e.g. C(nvidia-persistenced.service).
    type: str
    required: true
  enabled:
    description: Whether the unit should be enabled.
    type: bool
    required: true
  now:
    description: Also start (enable) or stop (disable) it, where systemd is running.
    type: bool
    default: false
  root:
    description: Image tree to work on; C(/) for this host.
    type: path
    default: /
  state_dir:
    description: gpuprov's state directory (default C($GPUPROV_STATE_DIR) or ROOT/var/lib/gpuprov).
    type: path
  record:
    description: Record the previous enablement before changing it (false when reverting).
    type: bool
    default: true
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
  platform:
    platforms: posix
author:
  - gpuprov maintainers (@gpuprov)
"""

EXAMPLES = r"""
- name: Enable and start the driver's persistence daemon.
  gpuprov.gpu.gpuprov_unit:
    name: nvidia-persistenced.service
    enabled: true
    now: true

- name: Enable the boot-time GPU settings unit in an image tree (symlinks, nothing started).
  gpuprov.gpu.gpuprov_unit:
    name: gpuprov-gpu-settings.service
    enabled: true
    root: /srv/images/node01
"""

RETURN = r"""
offline:
  description: True when systemd was not running, so the unit was enabled by symlinks and not started.
  returned: always
  type: bool
links:
  description: Symlinks created or removed (offline mode).
  returned: always
  type: list
  elements: str
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov_library import require_library


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "enabled": {"type": "bool", "required": True},
            "now": {"type": "bool", "default": False},
            "root": {"type": "path", "default": "/"},
            "state_dir": {"type": "path"},
            "record": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    require_library(module)
    from provision import applystate, systemd
    from provision.errors import GpuprovError

    p = module.params
    name, want = p["name"], p["enabled"]
    if "/" in name or not name or "." not in name:
        module.fail_json(msg=f"name must be a unit name like foo.service, got {name!r}")
    root = Path(p["root"])
    online = systemd.running_systemd(root)
    links: list[str] = []
    try:
        state_dir = Path(p["state_dir"]) if p["state_dir"] else applystate.state_dir(root)
        # links in an image tree are followed as inside it (provision.roottree): the .wants/ links stay there
        state = systemd.unit_state(name, root=root)
        if state.path is None and want and not module.check_mode:
            module.fail_json(msg=f"{name}: no such unit file under {root} (install it first)")
        changed = state.enabled != want
        if changed and not module.check_mode:
            if p["record"]:
                # whether it ran: revert stops what apply started (and starts what apply stopped)
                active = systemd.is_active(name) if online else None
                applystate.record_previous(state_dir, "units", name, {"enabled": state.enabled, "active": active})
            if online:
                systemd.systemctl("daemon-reload")
                systemd.systemctl("enable" if want else "disable", *(["--now"] if p["now"] else []), name)
            elif want:
                links = systemd.enable_offline(name, root=root)
            else:
                links = systemd.disable_offline(name, root=root)
        elif online and p["now"] and want and not module.check_mode:
            systemd.systemctl("start", name)
    except GpuprovError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"{name}: {exc.filename or root}: {exc.strerror or exc}")
    out = {"changed": changed, "offline": not online, "links": links}
    if module._diff and changed:
        out["diff"] = {"before": f"{name}: enabled={state.enabled}\n", "after": f"{name}: enabled={want}\n"}
    if module.check_mode and changed:
        msg = f"{name} would be {'enabled' if want else 'disabled'}" + ("" if online else " (offline: not started)")
    elif not changed:
        msg = f"{name} already {'enabled' if want else 'disabled'}"
    elif online:
        msg = f"{name} {'enabled' if want else 'disabled'}" + (" and started" if p["now"] and want else "")
    else:
        msg = f"{name} {'enabled' if want else 'disabled'} offline (systemd is not running here): not started"
    module.exit_json(msg=msg, **out)


if __name__ == "__main__":
    main()
