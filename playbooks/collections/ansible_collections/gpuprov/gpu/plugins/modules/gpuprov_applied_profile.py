#!/usr/bin/python
# ruff: noqa: E402  (Ansible module layout: DOCUMENTATION/RETURN come before the imports)
"""Ansible module: record which gpuprov profile is in effect on the host (STATE_DIR/profile.json)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpuprov_applied_profile
short_description: Record which gpuprov profile is in effect on the host
description:
  - Writes C(profile.json) in gpuprov's state directory, which C(gpuprov bench) and C(gpuprov monitor) read
    to know the profile a measurement was made under; removes it when I(profile) is not given (a revert).
  - The last task of an apply (C(gpuprov apply) and a fleet rollout alike), so it records only a run that
    got to the end. gpuprov's own bookkeeping, not the host's configuration (C(gpuprov revert) removes it).
options:
  profile:
    description: The profile now in effect; omitted (or null) after a revert.
    type: str
  root:
    description: The tree gpuprov applied the profile to (an image tree); C(/) for this host.
    type: path
    default: /
  state_dir:
    description: gpuprov's state directory (default C($GPUPROV_STATE_DIR) or ROOT/var/lib/gpuprov).
    type: path
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
- name: Record that the rtx4090 profile is in effect.
  gpuprov.gpu.gpuprov_applied_profile:
    profile: rtx4090

- name: Record that no profile is in effect any more (after a revert).
  gpuprov.gpu.gpuprov_applied_profile:
    state_dir: /var/lib/gpuprov
"""

RETURN = r"""
profile:
  description: The profile recorded (null when none is in effect).
  returned: always
  type: str
  sample: rtx4090
previous:
  description: The profile recorded before (null when none was).
  returned: always
  type: str
  sample: rtx4090-laptop
"""

from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov_library import require_library


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "profile": {"type": "str"},
            "root": {"type": "path", "default": "/"},
            "state_dir": {"type": "path"},
        },
        supports_check_mode=True,
    )
    require_library(module)
    from provision import applystate
    from provision.errors import GpuprovError

    p = module.params
    # the directory gpuprov_plan reads it from (its applied_profile result)
    state_dir = Path(p["state_dir"]) if p["state_dir"] else applystate.state_dir(Path(p["root"]))
    profile = p["profile"] or None
    try:
        previous = applystate.applied_profile(state_dir)
        if previous != profile and not module.check_mode:
            applystate.set_applied_profile(state_dir, profile)
    except (OSError, GpuprovError) as exc:
        module.fail_json(msg=f"cannot record the profile in effect in {state_dir}: {exc}")
    module.exit_json(changed=previous != profile, profile=profile, previous=previous)


if __name__ == "__main__":
    main()
