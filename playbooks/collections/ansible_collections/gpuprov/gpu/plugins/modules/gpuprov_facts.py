#!/usr/bin/python
# ruff: noqa: E402  (Ansible module layout: DOCUMENTATION/RETURN come before the imports)
"""Ansible module: the gpuprov probe's snapshot of the host, as facts."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpuprov_facts
short_description: Return gpuprov's snapshot of the host (GPUs, driver, host facts) as facts
description:
  - Runs the same probe as C(gpuprov doctor) (NVML through nvidia-ml-py, or the replay backend named
    by C(GPUPROV_NVML_REPLAY)) and returns it as the fact C(gpuprov_snapshot).
  - Needs the C(gpuprov) Python package on the host, importable by the interpreter running the module.
options:
  full:
    description: Also read the Python environment, CUDA toolkits and inference engines (slower).
    type: bool
    default: false
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
- name: Read the host's GPUs and driver.
  gpuprov.gpu.gpuprov_facts:

- name: Also read the Python environment, CUDA toolkits and inference engines.
  gpuprov.gpu.gpuprov_facts:
    full: true
"""

RETURN = r"""
ansible_facts:
  description: C(gpuprov_snapshot), the snapshot as C(gpuprov doctor --json) prints it.
  returned: always
  type: dict
  sample: {"gpuprov_snapshot": {"schema_version": 1, "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3"}]}}
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov_library import require_library


def main() -> None:
    module = AnsibleModule(argument_spec={"full": {"type": "bool", "default": False}}, supports_check_mode=True)
    require_library(module)
    from provision import probe
    from provision.errors import GpuprovError

    try:
        snap = probe.probe() if module.params["full"] else probe.plan_snapshot()
    except GpuprovError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ansible_facts={"gpuprov_snapshot": snap.to_dict()})


if __name__ == "__main__":
    main()
