#!/usr/bin/python
# ruff: noqa: E402  (Ansible module layout: DOCUMENTATION/RETURN come before the imports)
"""Ansible module: llama-cpp-python compiled for this host's GPUs, as a gpuprov profile asks."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpuprov_llama_build
short_description: Build llama-cpp-python for the GPUs that are present, and verify it
description:
  - >-
    Takes the build that M(gpuprov.gpu.gpuprov_plan) decided (C(desired.llama_cpp): the CUDA architectures of the
    detected GPUs, the nvcc the driver can run, the CMake options of the llama-cpp-python version) and runs
    it with C(provision.llama_build), the code behind C(gpuprov build llama-cpp).
  - >-
    Idempotent: nothing is built when the environment already holds a build gpuprov recorded with the
    same version, architectures and CPU/CUDA choice. After a build the result is verified (CUDA linkage,
    kernels, C(llama_supports_gpu_offload())) and recorded next to the libraries.
  - >-
    The parallel jobs (-j) are bounded again when the build starts, by the cores and the memory available
    then (the plan only knew the host's total memory): one nvcc job needs about 2.5 GiB.
  - In check mode reports whether a build would run, and why.
options:
  build:
    description: The build plan, as M(gpuprov.gpu.gpuprov_plan) returns it in C(desired.llama_cpp).
    type: dict
    required: true
  log:
    description: Where to write the build log (default under /var/log/gpuprov/).
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
- name: Build llama-cpp-python for the GPUs the plan found.
  gpuprov.gpu.gpuprov_llama_build:
    build: "{{ gpuprov_gpu_plan.desired.llama_cpp }}"
    log: /var/log/gpuprov/llama-cpp.log
"""

RETURN = r"""
reason:
  description: Why a build ran (or would run), or that it was already as asked.
  returned: always
  type: str
  sample: built for sm_86, needed sm_89
command:
  description: The environment and command line of the build, as C(gpuprov build llama-cpp --dry-run) prints it.
  returned: always
  type: str
checks:
  description: The verification after the build (name, ok, detail).
  returned: when a build ran
  type: list
  elements: dict
log:
  description: The build log.
  returned: when a build ran
  type: str
"""

import os
import time
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov_library import require_library


def main() -> None:
    module = AnsibleModule(
        argument_spec={"build": {"type": "dict", "required": True}, "log": {"type": "path"}},
        supports_check_mode=True,
    )
    require_library(module)
    from provision import llama_build as lb
    from provision.errors import GpuprovError

    raw = dict(module.params["build"])
    raw.pop("shell", None)
    try:
        plan = lb.BuildPlan(**raw)
    except TypeError as exc:
        module.fail_json(msg=f"build is not a gpuprov build plan (desired.llama_cpp of gpuprov_plan): {exc}")
    if not Path(plan.python).is_file():
        module.fail_json(msg=f"{plan.python}: no such interpreter: create the environment first (uv venv)")
    installed = lb.installed_build(plan.python)
    same, reason = lb.build_matches(installed, plan)
    out = {"reason": reason, "command": plan.shell()}
    if same:
        module.exit_json(changed=False, msg=reason, **out)
    if module._diff:
        before = "\n".join(f"{k}: {v}" for k, v in sorted((installed or {}).items())) + "\n"
        after = f"version: {plan.version}\ncpu: {plan.cpu}\narchs: {plan.archs}\n"
        out["diff"] = {"before": before, "after": after, "before_header": "llama-cpp-python", "after_header": "build"}
    if module.check_mode:
        module.exit_json(changed=True, msg=f"would build: {reason}", **out)
    plan = lb.rebound_jobs(plan, os.cpu_count(), lb.mem_available_mib())
    out["command"] = plan.shell()
    log = Path(module.params["log"] or f"/var/log/gpuprov/llama-cpp-{time.strftime('%Y%m%d-%H%M%S')}.log")
    try:
        result = lb.run_build(plan, log)
    except GpuprovError as exc:
        module.fail_json(msg=str(exc), **out)
    if not result.ok:
        module.fail_json(
            msg=f"build failed at {result.failed_step}: " + " | ".join(result.error_lines[-3:]),
            log=result.log_path,
            error_lines=result.error_lines,
            **out,
        )
    checks = lb.verify_build(plan)
    rows = [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in checks]
    failed = [c for c in checks if c.ok is False]
    if failed:
        module.fail_json(
            msg="built, but " + "; ".join(f"{c.name}: {c.detail}" for c in failed),
            checks=rows,
            log=result.log_path,
            **out,
        )
    lb.record_build(plan, result)
    module.exit_json(
        changed=True, msg=f"built in {result.duration_s:.0f} s ({reason})", checks=rows, log=result.log_path, **out
    )


if __name__ == "__main__":
    main()
