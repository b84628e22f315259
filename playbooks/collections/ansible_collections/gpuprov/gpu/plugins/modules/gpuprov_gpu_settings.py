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
      - Desired settings per GPU, as M(gpuprov_plan) returns them in C(desired.gpus).
      - Each item has C(key) (GPU UUID, or C(index:N)), C(index), C(name) and C(settings), a mapping with
        any of C(power_limit_w) (number), C(persistence_mode) (bool), C(locked_clocks_mhz) ([min, max], or
        null to reset a lock).
      - An item may also have C(fallback_locked_clocks_mhz) ([min, max]), used when the driver refuses
        C(power_limit_w) as not supported (many laptops), instead of failing; the refusal is remembered.
    type: list
    elements: dict
    required: true
  state_dir:
    description: gpuprov's state directory (default C($GPUPROV_STATE_DIR) or /var/lib/gpuprov).
    type: path
  record:
    description: Record the previous settings before changing them (false when reverting).
    type: bool
    default: true
attributes:
  check_mode: {support: full}
  diff_mode: {support: full}
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
            "gpus": {"type": "list", "elements": "dict", "required": True},
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
    for item in p["gpus"]:
        if not isinstance(item.get("key"), str) or not isinstance(item.get("settings"), dict):
            module.fail_json(msg=f"each item of gpus needs key (text) and settings (a mapping), got {item!r}")
        unknown = set(item["settings"]) - set(gpusettings.SETTINGS)
        if unknown:
            module.fail_json(msg=f"unknown GPU setting(s) {', '.join(sorted(unknown))}: allowed {gpusettings.SETTINGS}")

    def run(backend, gpus):
        results, before, after = [], "", ""
        recorded = applystate.recorded_locked_clocks(state_dir)
        refused = applystate.power_limit_refused(state_dir)
        for item in p["gpus"]:
            gpu = gpusettings.find_gpu(gpus, item["key"], item.get("index"))
            current = gpusettings.current_settings(gpu, recorded)
            fallback = item.get("fallback_locked_clocks_mhz")
            todo = gpusettings.pending(
                current,
                item["settings"],
                fallback_locked_clocks_mhz=fallback,
                power_limit_refused=gpusettings.gpu_key(gpu) in refused,
            )
            lines = [f"{k} {current.get(k)} -> {v}" for k, v in todo.items()]
            if todo and not module.check_mode:
                if p["record"]:
                    managed = set(item["settings"]) | ({"locked_clocks_mhz"} if fallback else set())
                    before_settings = {k: current.get(k) for k in sorted(managed)}
                    record = {"index": gpu.index, "name": gpu.name, "settings": before_settings}
                    applystate.record_previous(state_dir, "gpus", gpusettings.gpu_key(gpu), record)
                lines = gpusettings.apply_settings(
                    backend, gpu, todo, state_dir=state_dir, fallback_locked_clocks_mhz=fallback
                )
            results.append({"key": gpusettings.gpu_key(gpu), "index": gpu.index, "set": lines})
            if todo:
                before += f"# GPU {gpu.index} ({gpu.name})\n" + _fmt({k: current.get(k) for k in todo})
                after += f"# GPU {gpu.index} ({gpu.name})\n" + _fmt(todo)
        return results, before, after

    try:
        results, before, after = gpusettings.with_nvml(run)
    except GpuprovError as exc:
        module.fail_json(msg=str(exc))
    changed = any(r["set"] for r in results)
    out = {"changed": changed, "gpus": results}
    if module._diff and changed:
        out["diff"] = {
            "before": before,
            "after": after,
            "before_header": "GPU settings",
            "after_header": "GPU settings",
        }
    summary = "; ".join(f"GPU {r['index']}: {', '.join(r['set'])}" for r in results if r["set"])
    module.exit_json(msg=summary or "GPU settings already as desired", **out)


if __name__ == "__main__":
    main()
