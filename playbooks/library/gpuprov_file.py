#!/usr/bin/python
# ruff: noqa: E402  (Ansible module layout: DOCUMENTATION/RETURN come before the imports)
"""Ansible module: a file gpuprov owns, written from content or from templates/*.j2 via provision.render."""

from __future__ import annotations

DOCUMENTATION = r"""
module: gpuprov_file
short_description: Write (or remove) a file gpuprov manages, rendering templates with gpuprov's renderer
description:
  - >-
    Writes I(content), or renders I(template) (a name in gpuprov's C(templates/)) with I(vars) through
    C(provision.render) — the same renderer C(gpuprov plan --diff) and C(gpuprov render) use, so a preview
    and what Ansible writes are identical. C(ansible.builtin.template) is not used: its Jinja2 settings differ.
  - The file is written atomically. Before the first change, its previous content and mode (or its
    absence) are recorded in the state directory for C(gpuprov revert).
options:
  path:
    description: Absolute path of the file on the host (under I(root)).
    type: str
    required: true
  content:
    description: The file's content. Null with I(state=absent).
    type: str
  template:
    description: Template name under gpuprov's C(templates/), e.g. C(gpuprov-gpu-settings.service.j2).
    type: str
  vars:
    description: Variables for I(template); a missing variable is an error (StrictUndefined).
    type: dict
    default: {}
  mode:
    description: File mode, octal text.
    type: str
    default: "0644"
  state:
    description: C(present) writes the file, C(absent) removes it.
    type: str
    choices: [present, absent]
    default: present
  root:
    description: Directory the path is relative to (an image tree); C(/) for this host.
    type: path
    default: /
  state_dir:
    description: gpuprov's state directory (default C($GPUPROV_STATE_DIR) or ROOT/var/lib/gpuprov).
    type: path
  remove_dirs:
    description:
      - With I(state=absent), directories (under I(root)) to remove afterwards when they are empty —
        those gpuprov created, as its records list them; tried also when the file is already gone.
    type: list
    elements: str
    default: []
  record:
    description: Record the previous content before changing it (false when reverting).
    type: bool
    default: true
attributes:
  check_mode: {support: full}
  diff_mode: {support: full}
"""

EXAMPLES = r"""
- name: Write the driver option that keeps CUDA alive over suspend, from gpuprov's template.
  gpuprov_file:
    path: /etc/modprobe.d/gpuprov-nvidia-preserve-vram.conf
    template: gpuprov-nvidia-preserve-vram.conf.j2
    vars:
      profile: rtx4090-laptop
      temporary_file_path: /var/tmp
    mode: "0644"

- name: Write a file's content as given, recorded for gpuprov revert.
  gpuprov_file:
    path: /etc/gpuprov/gpu-settings.json
    content: |
      {"profile": "rtx4090", "gpus": []}
    mode: "0644"

- name: Remove a drop-in gpuprov wrote, and its directory when empty, in an image tree.
  gpuprov_file:
    path: /etc/systemd/system/ollama.service.d/gpuprov.conf
    state: absent
    remove_dirs:
      - /etc/systemd/system/ollama.service.d
    root: /srv/images/node01
    record: false
"""

RETURN = r"""
path:
  description: The file written or removed, as a path on the controller's view of the host.
  returned: always
  type: str
  sample: /etc/systemd/system/gpuprov-gpu-settings.service
removed_dirs:
  description: Directories of I(remove_dirs) that were empty and removed (state=absent).
  returned: always
  type: list
  elements: str
"""

import contextlib
import os
import stat
import tempfile
from pathlib import Path

from ansible.module_utils.basic import AnsibleModule, missing_required_lib


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "path": {"type": "str", "required": True},
            "content": {"type": "str"},
            "template": {"type": "str"},
            "vars": {"type": "dict", "default": {}},
            "mode": {"type": "str", "default": "0644"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "root": {"type": "path", "default": "/"},
            "state_dir": {"type": "path"},
            "record": {"type": "bool", "default": True},
            "remove_dirs": {"type": "list", "elements": "str", "default": []},
        },
        mutually_exclusive=[("content", "template")],
        required_if=[("state", "present", ("content", "template"), True)],
        supports_check_mode=True,
    )
    try:
        from provision import applystate
        from provision.errors import GpuprovError
        from provision.render import render
    except ImportError:
        module.fail_json(msg=missing_required_lib("gpuprov (the provision package)"))
    p = module.params
    if not p["path"].startswith("/"):
        module.fail_json(msg=f"path must be absolute, got {p['path']!r}")
    try:
        mode = int(p["mode"], 8)
    except ValueError:
        module.fail_json(msg=f"mode must be octal text like 0644, got {p['mode']!r}")
    root = Path(p["root"])
    target = root / p["path"].lstrip("/")
    state_dir = Path(p["state_dir"]) if p["state_dir"] else applystate.state_dir(root)
    try:
        desired = None
        if p["state"] == "present":
            desired = render(p["template"], p["vars"]) if p["template"] else p["content"]
        try:
            current = target.read_text(encoding="utf-8", errors="surrogateescape")
            current_mode = stat.S_IMODE(target.stat().st_mode)
        except FileNotFoundError:
            current, current_mode = None, None
        changed = current != desired or (desired is not None and current_mode != mode)
        if changed and not module.check_mode:
            missing_dirs = []
            parent = target.parent
            while not parent.exists() and parent != root:
                missing_dirs.append("/" + str(parent.relative_to(root)))
                parent = parent.parent
            if p["record"]:
                applystate.record_previous(
                    state_dir, "files", p["path"],
                    {"content": current, "mode": None if current_mode is None else f"{current_mode:04o}",
                     "created_dirs": missing_dirs},
                )  # fmt: skip
            if desired is None:
                target.unlink()
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
                with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
                    fh.write(desired)
                os.chmod(tmp, mode)
                os.replace(tmp, target)
        removed_dirs = []
        if desired is None and not module.check_mode:
            # deepest first; also when the file was gone already (another file's removal left them empty)
            for d in sorted(p["remove_dirs"], key=lambda d: -d.count("/")):
                path = root / d.lstrip("/")
                # not empty (something else lives there) or already gone: keep it
                with contextlib.suppress(OSError):
                    path.rmdir()
                    removed_dirs.append(d)
        changed = changed or bool(removed_dirs)
    except GpuprovError as exc:
        module.fail_json(msg=str(exc))
    except OSError as exc:
        module.fail_json(msg=f"{target}: {exc.strerror or exc}")
    out = {"changed": changed, "path": p["path"], "removed_dirs": removed_dirs}
    if module._diff and changed:
        out["diff"] = {
            "before": current or "", "after": desired or "",
            "before_header": f"{p['path']} ({'absent' if current is None else 'current'})",
            "after_header": f"{p['path']} ({'absent' if desired is None else 'desired'})",
        }  # fmt: skip
    verb = "removed" if desired is None else "written"
    if module.check_mode:
        verb = "would be " + verb
    module.exit_json(msg=f"{p['path']} {verb}" if changed else f"{p['path']} already as desired", **out)


if __name__ == "__main__":
    main()
