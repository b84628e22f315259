#!/usr/bin/python
# ruff: noqa: E402  (Ansible module layout: DOCUMENTATION/RETURN come before the imports)
"""Ansible module: which gpuprov profile this host gets in a fleet rollout, or why it is skipped. Read-only."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpuprov_select
short_description: Choose the gpuprov profile for this host (named or auto), or say why its GPU tasks are skipped
description:
  - Probes the host's GPUs (NVML through nvidia-ml-py, or the replay backend named by C(GPUPROV_NVML_REPLAY))
    and calls C(provision.fleet.select), the decision C(playbooks/site.yml) makes per host.
  - C(auto) picks the built-in profile that matches the most of the host's GPUs, naming the GPU model
    before one that only gives a compute capability (h100 before datacenter).
  - >-
    A host with no usable driver, no GPU or no matching profile is not a failure: I(action) is
    C(skip) and I(reason) says why. A profile name that does not exist or does not load fails.
options:
  profile:
    description: Profile name (built-in, C(/etc/gpuprov/profiles/), C(~/.config/gpuprov/profiles/)) or C(auto).
    type: str
    default: auto
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
- name: Choose the profile from the GPUs the host has.
  gpuprov.gpu.gpuprov_select:
    profile: auto
  register: gpuprov_selection

- name: Use the profile the inventory names (skipped when the host's GPUs do not match it).
  gpuprov.gpu.gpuprov_select:
    profile: "{{ gpuprov_profile }}"
"""

RETURN = r"""
action:
  description: C(apply) when the GPU tasks run with I(profile), C(skip) when they do not.
  returned: success
  type: str
  sample: apply
profile:
  description: The profile applied (or named by the inventory, for a skipped host); null when auto found none.
  returned: success
  type: str
  sample: rtx4090
gpus:
  description: The host's GPUs, one entry per model with its count.
  returned: success
  type: list
  elements: str
  sample: ["1x NVIDIA GeForce RTX 4090"]
reason:
  description: Why the GPU tasks are skipped (empty when they run).
  returned: success
  type: str
chosen_by:
  description: C(inventory) or C(auto).
  returned: success
  type: str
"""

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov_library import require_library


def main() -> None:
    module = AnsibleModule(argument_spec={"profile": {"type": "str", "default": "auto"}}, supports_check_mode=True)
    require_library(module)
    from provision import fleet, probe
    from provision.errors import GpuprovError

    try:
        selection = fleet.select(probe.plan_snapshot(), module.params["profile"] or fleet.AUTO)
    except GpuprovError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, **selection.to_dict())


if __name__ == "__main__":
    main()
