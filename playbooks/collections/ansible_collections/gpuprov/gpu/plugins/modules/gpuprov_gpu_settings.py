#!/usr/bin/python
# ruff: noqa: E402  (Ansible module layout: DOCUMENTATION/RETURN come before the imports)
"""Ansible module: power limit, persistence mode and locked clocks of NVIDIA GPUs, through NVML."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpuprov_gpu_settings
short_description: Set NVIDIA GPU power limit, persistence mode and locked clocks through NVML
description:
  - For each GPU, compares the current settings (a fresh NVML probe) with the desired ones and calls
    only the setters needed (C(nvmlDeviceSetPowerManagementLimit), C(nvmlDeviceSetPersistenceMode),
    C(nvmlDeviceSetGpuLockedClocks) / C(nvmlDeviceResetGpuLockedClocks)) through C(provision.gpusettings),
    the code C(gpuprov apply) and the boot-time unit use.
  - Before the first change to a GPU, its previous settings are recorded in the state directory, so
    C(gpuprov revert) can restore them. NVML settings need root.
options:
  gpus:
    description:
      - Desired settings per GPU, as M(gpuprov.gpu.gpuprov_plan) returns them in C(desired.gpus).
    type: list
    elements: dict
    required: true
    suboptions:
      key:
        description: The GPU's UUID, or C(index:N) when NVML gave none.
        type: str
        required: true
      index:
        description: The GPU's NVML index (finds a GPU named C(index:N)).
        type: int
      name:
        description: The GPU's name, for messages.
        type: str
      settings:
        description:
          - The settings to manage, a mapping with any of C(power_limit_w) (number), C(persistence_mode)
            (bool), C(locked_clocks_mhz) ([min, max], or null to reset a lock). Settings not named are left alone.
        type: dict
        required: true
      fallback_locked_clocks_mhz:
        description:
          - Locked clocks ([min, max]) set instead when the driver refuses C(power_limit_w) as not supported
            (many laptops), instead of failing; the refusal is remembered.
        type: list
        elements: int
  state_dir:
    description: gpuprov's state directory (default C($GPUPROV_STATE_DIR) or /var/lib/gpuprov).
    type: path
  record:
    description: Record the previous settings before changing them (false when reverting).
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
- name: Cap GPU 0 at 250 W with persistence mode on (the plan's desired.gpus has this shape).
  gpuprov.gpu.gpuprov_gpu_settings:
    gpus:
      - key: index:0
        index: 0
        name: NVIDIA GeForce RTX 4090
        settings:
          power_limit_w: 250
          persistence_mode: true

- name: Apply what gpuprov_plan decided.
  gpuprov.gpu.gpuprov_gpu_settings:
    gpus: "{{ gpuprov_gpu_plan.desired.gpus }}"
    state_dir: /var/lib/gpuprov
"""

RETURN = r"""
gpus:
  description: Per GPU, its key and the lines describing what was (or in check mode would be) set.
  returned: always
  type: list
  elements: dict
  sample: [{"key": "GPU-8f3c...", "index": 0, "set": ["power limit 250 W"]}]
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov_library import require_library


def _fmt(settings: dict) -> str:
    return "".join(f"{k}: {settings[k]}\n" for k in sorted(settings))


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "gpus": {
                "type": "list",
                "elements": "dict",
                "required": True,
                "options": {
                    "key": {"type": "str", "required": True, "no_log": False},
                    "index": {"type": "int"},
                    "name": {"type": "str"},
                    "settings": {"type": "dict", "required": True},
                    "fallback_locked_clocks_mhz": {"type": "list", "elements": "int"},
                },
            },
            "state_dir": {"type": "path"},
            "record": {"type": "bool", "default": True},
        },
        supports_check_mode=True,
    )
    require_library(module)
    from provision import applystate, gpusettings
    from provision.errors import GpuprovError

    p = module.params
    state_dir = Path(p["state_dir"]) if p["state_dir"] else applystate.state_dir()
    try:
        targets = [gpusettings.target_from_dict(item) for item in p["gpus"]]
    except ValueError as exc:  # a setting gpuprov does not manage
        module.fail_json(msg=str(exc))

    def run(backend, gpus):
        return gpusettings.apply_targets(
            backend, gpus, targets, state_dir=state_dir, record=p["record"], check=module.check_mode
        )

    try:
        outcomes = gpusettings.with_nvml(run)
    except GpuprovError as exc:
        module.fail_json(msg=str(exc))
    results = [{"key": o.key, "index": o.index, "set": o.lines} for o in outcomes]
    changed = any(o.lines for o in outcomes)
    out = {"changed": changed, "gpus": results}
    if module._diff and changed:
        out["diff"] = {
            "before": "".join(f"# GPU {o.index} ({o.name})\n" + _fmt(o.before) for o in outcomes if o.after),
            "after": "".join(f"# GPU {o.index} ({o.name})\n" + _fmt(o.after) for o in outcomes if o.after),
            "before_header": "GPU settings",
            "after_header": "GPU settings",
        }
    summary = "; ".join(f"GPU {r['index']}: {', '.join(r['set'])}" for r in results if r["set"])
    module.exit_json(msg=summary or "GPU settings already as desired", **out)


if __name__ == "__main__":
    main()
