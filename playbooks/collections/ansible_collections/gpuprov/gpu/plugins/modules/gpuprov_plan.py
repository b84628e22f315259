#!/usr/bin/python
# ruff: noqa: E402  (Ansible module layout: DOCUMENTATION/RETURN come before the imports)
"""Ansible module: what a gpuprov profile (or a revert) would change on this host. Read-only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpuprov_plan
short_description: Compute the desired state of a gpuprov profile on this host, and what differs
description:
  - >-
    Calls C(provision.plan.make_plan) on a fresh probe of the host: the same function C(gpuprov plan)
    prints. Changes nothing; the changing modules (M(gpuprov.gpu.gpuprov_gpu_settings), M(gpuprov.gpu.gpuprov_file),
    M(gpuprov.gpu.gpuprov_unit)) take its C(desired) result.
  - >-
    With I(root) other than C(/) (an image tree) no NVML call is made: the GPU settings go to the image's
    boot unit.
  - Fails, before anything is changed, when another C(gpuprov apply) holds the lock (see I(lock_pid)),
    when there is no usable NVIDIA driver, when the profile fits
    none of the GPUs (unless I(force)), when a power limit is outside a GPU's NVML constraints, or when
    a unit's sandbox would hide what it runs (gpuprov or the server under /tmp or /var/tmp).
options:
  profile:
    description: Profile name (built-in, C(/etc/gpuprov/profiles/), C(~/.config/gpuprov/profiles/)).
    type: str
  revert:
    description: Plan back to the state recorded before gpuprov's first change instead of a profile.
    type: bool
    default: false
  force:
    description: Apply the profile even when it does not match the detected GPUs.
    type: bool
    default: false
  root:
    description: Files and units are read under this directory (an image tree); GPUs are this host's.
    type: path
    default: /
  state_dir:
    description: gpuprov's state directory (default C($GPUPROV_STATE_DIR) or ROOT/var/lib/gpuprov).
    type: path
  python:
    description: Interpreter the boot-time unit runs gpuprov with (default the one running this module).
    type: path
  exporter_port:
    description:
      - >-
        Install gpuprov's Prometheus exporter on this port whatever the profile's C(monitoring) section says
        (a fleet enables it on every host with one variable).
    type: int
  exporter_address:
    description: The address the exporter listens on (with I(exporter_port)).
    type: str
    default: 127.0.0.1
  without:
    description:
      - >-
        Sections of the profile this host leaves out, e.g. C([stack]) on a host whose server environment is
        made another way (baked into an image, on a shared filesystem): the server is set up as if the
        profile had no such section. An unknown section name fails the plan.
    type: list
    elements: str
    default: []
  lock_pid:
    description:
      - >-
        The pid of the C(gpuprov apply)/C(revert) that holds gpuprov's apply lock (C(apply.lock) in the state
        directory) for this run. Outside check mode the plan fails when another process holds it, so a
        playbook run directly with C(ansible-playbook) never runs alongside a C(gpuprov apply).
    type: int
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
author:
  - gpuprov maintainers (@gpuprov)
"""

EXAMPLES = r"""
- name: Compute what the rtx4090 profile would change here.
  gpuprov.gpu.gpuprov_plan:
    profile: rtx4090
  register: gpuprov_gpu_plan

- name: Plan back to the state recorded before gpuprov's first change.
  gpuprov.gpu.gpuprov_plan:
    revert: true
    state_dir: /var/lib/gpuprov
  register: gpuprov_gpu_plan

- name: Plan a profile for an image tree, even on a GPU it does not list.
  gpuprov.gpu.gpuprov_plan:
    profile: datacenter
    force: true
    root: /srv/images/node01
    python: /opt/gpuprov/bin/python
"""

RETURN = r"""
desired:
  description: Desired state (gpus with their settings, files with content and mode, units) and notes.
  returned: success
  type: dict
changes:
  description: One entry per item and setting, current and desired value, action change/ok/skip.
  returned: success
  type: list
  elements: dict
settled:
  description:
    - The subjects (file paths, unit names) the plan found exactly as desired, every change of theirs C(ok);
      the files among them need not be written again.
  returned: success
  type: list
  elements: str
gpu_pending:
  description:
    - How many of those changes are GPU settings. None, and M(gpuprov.gpu.gpuprov_gpu_settings) need not run
      (the GPU was probed once, for this plan).
  returned: success
  type: int
  sample: 0
systemd_online:
  description:
    - >-
      Whether systemd runs this host as PID 1 and I(root) is C(/): units are started and stopped only then
      (elsewhere they are enabled by links, for the next boot).
  returned: success
  type: bool
  sample: false
applied_profile:
  description:
    - >-
      The profile recorded as in effect (C(profile.json) in the state directory, which
      M(gpuprov.gpu.gpuprov_applied_profile) writes); null when none is. The same profile need not be recorded again.
  returned: success, when the record can be read
  type: str
  sample: rtx4090
pending:
  description: How many changes applying would make.
  returned: success
  type: int
  sample: 3
gpuprov_refusal:
  description: On failure, true when the plan refused the profile before any change (C(msg) says why).
  returned: failure
  type: bool
notes:
  description: What the plan wants a person to know (fallbacks used, reboot needed, systemd not running).
  returned: success
  type: list
  elements: str
"""

import sys
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov_library import require_library


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "profile": {"type": "str"},
            "revert": {"type": "bool", "default": False},
            "force": {"type": "bool", "default": False},
            "root": {"type": "path", "default": "/"},
            "state_dir": {"type": "path"},
            "python": {"type": "path"},
            "lock_pid": {"type": "int"},
            "exporter_port": {"type": "int"},
            "exporter_address": {"type": "str", "default": "127.0.0.1"},
            "without": {"type": "list", "elements": "str", "default": []},
        },
        required_if=[("revert", False, ("profile",))],
        mutually_exclusive=[("revert", "force")],
        supports_check_mode=True,
    )
    require_library(module)
    from provision import applystate, hoststate, plan, probe, systemd
    from provision.errors import GpuprovError
    from provision.gpudecisions import SETTINGS
    from provision.profiles.loader import load_profile

    p = module.params
    root = Path(p["root"])
    try:
        state_dir = Path(p["state_dir"]) if p["state_dir"] else applystate.state_dir(root)
        holder = None if module.check_mode else applystate.lock_holder(state_dir)
        if holder is not None and holder != p["lock_pid"]:
            module.fail_json(msg=f"another gpuprov apply is running (pid {holder or 'unknown'}): wait for it to finish")
        python = p["python"] or sys.executable
        snap = probe.plan_snapshot(root=root)
        if p["revert"]:
            host = hoststate.read_host_state(snap, None, root=root, directory=state_dir, python=python)
            result = plan.make_revert_plan(snap, applystate.load_previous(state_dir), host)
        else:
            prof = load_profile(p["profile"], root=root)
            if p["exporter_port"] is not None:
                from provision.monitor.section import with_exporter

                prof = with_exporter(prof, p["exporter_port"], p["exporter_address"])
            if p["without"]:
                from provision.profiles.schema import without_sections

                prof = without_sections(prof, p["without"])
            host = hoststate.read_host_state(snap, prof, root=root, directory=state_dir, python=python)
            result = plan.make_plan(snap, prof, host, force=p["force"])
    except GpuprovError as exc:  # refused before any change: gpuprov apply says it in one line, exit code 3
        module.fail_json(msg=str(exc), gpuprov_refusal=True)
    data = result.to_dict()
    if data["desired"].get("refusals"):  # a unit that could not start as planned: nothing is changed
        module.fail_json(msg="; ".join(data["desired"]["refusals"]), gpuprov_refusal=True)
    # GPU settings the plan found different from the probe it made: none, and the run probes the GPU once
    gpu_pending = sum(1 for c in data["changes"] if c["setting"] in SETTINGS and c["action"] == "change")
    # files and units the plan found exactly as desired (every one of their changes "ok"): nothing to write
    actions: dict[str, set[str]] = {}
    for c in data["changes"]:
        actions.setdefault(c["subject"], set()).add(c["action"])
    settled = sorted(subject for subject, seen in actions.items() if seen == {"ok"})
    module.exit_json(
        changed=False,
        desired=data["desired"],
        changes=data["changes"],
        pending=data["pending"],
        gpu_pending=gpu_pending,
        settled=settled,
        systemd_online=systemd.running_systemd(root),
        notes=data["notes"],
        **_applied_profile(state_dir),
    )


def _applied_profile(state_dir: Path) -> dict[str, str | None]:
    """``{"applied_profile": NAME}`` as recorded in ``state_dir``; nothing when the record cannot be read
    (the record task then runs, and fails saying why, as it would have)."""
    from provision import applystate
    from provision.errors import GpuprovError

    try:
        return {"applied_profile": applystate.applied_profile(state_dir)}
    except GpuprovError:
        return {}


if __name__ == "__main__":
    main()
