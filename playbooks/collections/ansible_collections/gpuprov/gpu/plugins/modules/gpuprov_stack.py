#!/usr/bin/python
# ruff: noqa: E402  (Ansible module layout: DOCUMENTATION/RETURN come before the imports)
"""Ansible module: the serving environment a gpuprov profile asks for, made with uv from gpuprov's compat plan."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpuprov_stack
short_description: Make the Python environment an inference server runs from, from gpuprov's compat plan
description:
  - >-
    Takes the environment M(gpuprov.gpu.gpuprov_plan) decided (C(desired.stack): the engine's set from
    C(gpuprov compat plan) for this host's GPUs and driver, or pins compat check accepted) and makes it with
    C(provision.stack): C(uv venv) in a new directory beside the one in use, C(uv pip install) with the
    plan's pins as constraints (or llama-cpp-python built for the GPUs present), C(compat check) of what was
    really installed, the profile's C(prune) list, a lock file in gpuprov's state, then the server's path
    (a symbolic link) switched to it atomically.
  - >-
    All or nothing: a failed install, build or check removes the new directory and leaves the server's path
    where it was. Idempotent: nothing runs when the environment in use holds the planned set (read from its
    metadata, nothing imported).
  - With I(state=absent) removes every environment gpuprov made (its records), and only those (revert).
  - In check mode reports whether an environment would be made, and why.
options:
  stack:
    description: The environment, as M(gpuprov.gpu.gpuprov_plan) returns it in C(desired.stack).
    type: dict
  state:
    description: C(present) makes the environment; C(absent) removes those gpuprov made.
    type: str
    choices: [present, absent]
    default: present
  state_dir:
    description: gpuprov's state directory (default C($GPUPROV_STATE_DIR) or C(/var/lib/gpuprov)).
    type: path
  log:
    description: Where to write the log of the commands run (default under /var/log/gpuprov/).
    type: path
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
- name: Make the server's environment the plan asks for.
  gpuprov.gpu.gpuprov_stack:
    stack: "{{ gpuprov_gpu_plan.desired.stack }}"

- name: Remove the environments gpuprov made.
  gpuprov.gpu.gpuprov_stack:
    state: absent
"""

RETURN = r"""
home:
  description: The directory of the environment the server's path leads to.
  returned: state=present
  type: str
installed:
  description: The set installed there (name to version), read from its metadata.
  returned: state=present
  type: dict
pruned:
  description: The prune candidates removed.
  returned: when an environment was made
  type: list
  elements: str
kept:
  description: The prune candidates kept, and why (what requires them).
  returned: when an environment was made
  type: dict
phases:
  description: Seconds spent in each phase (create, install or build, check, prune, lock and switch).
  returned: when an environment was made
  type: dict
removed:
  description: The environments (and links) removed.
  returned: when any was removed
  type: list
  elements: str
log:
  description: The log of the commands run.
  returned: when an environment was made
  type: str
"""

import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov_library import require_library


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "stack": {"type": "dict"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "state_dir": {"type": "path"},
            "log": {"type": "path"},
        },
        required_if=[("state", "present", ("stack",))],
        supports_check_mode=True,
    )
    require_library(module)
    from provision import applystate
    from provision.errors import GpuprovError
    from provision.stack import build, record, uvrun
    from provision.stack.spec import StackSpec

    state_dir = Path(module.params["state_dir"]) if module.params["state_dir"] else applystate.state_dir()
    if module.params["state"] == "absent":
        records = record.all_records(state_dir)
        homes = [h for r in records for h in r.get("homes", [])]
        if not records:
            module.exit_json(changed=False, msg="no environment made by gpuprov here", removed=[])
        if module.check_mode:
            module.exit_json(changed=True, msg="would remove " + ", ".join(homes), removed=homes)
        try:
            removed = build.remove_environments(state_dir, records)
        except (GpuprovError, OSError) as exc:
            module.fail_json(msg=f"removing gpuprov's environments: {exc}")
        module.exit_json(changed=bool(removed), msg="removed " + ", ".join(removed), removed=removed)

    raw = dict(module.params["stack"])
    try:
        spec = StackSpec.from_dict(raw)
    except TypeError as exc:
        module.fail_json(msg=f"stack is not a gpuprov environment (desired.stack of gpuprov_plan): {exc}")
    out = {"home": spec.home, "why": raw.get("why", "")}
    if raw.get("state") == "ok":
        module.exit_json(changed=False, msg=f"{spec.link} already holds {spec.summary()}", **out)
    if module._diff:
        current = raw.get("current_set") or {}
        before = "".join(f"{n}=={current[n]}\n" for n in spec.pins if n in current)
        after = "".join(f"{n}=={v}\n" for n, v in spec.pins.items())
        out["diff"] = {"before": before, "after": after, "before_header": spec.link, "after_header": spec.home}
    if module.check_mode:
        from provision.stack.preview import preview

        seen = preview(spec)
        out["preview"] = seen.to_dict()
        module.exit_json(changed=True, msg=f"would make {spec.home} ({raw.get('why', '')}): {seen.line()}", **out)
    from provision import probe

    log = Path(module.params["log"] or f"/var/log/gpuprov/stack-{time.strftime('%Y%m%d-%H%M%S')}.log")
    try:
        result = build.apply_spec(
            spec, probe.plan_snapshot(), state_dir=state_dir, log_path=log, progress=uvrun.progress_file_writer()
        )
    except build.StackRefused as exc:  # compat check said incompatible: gpuprov apply exits 3
        module.fail_json(msg=str(exc), log=str(log), gpuprov_refused=True, **out)
    except (GpuprovError, OSError) as exc:
        module.fail_json(msg=str(exc), log=str(log), **out)
    # the result carries its own changed: passed once, as the module's
    module.exit_json(**{**out, **result.to_dict(), "changed": result.changed, "msg": result.message})


if __name__ == "__main__":
    main()
