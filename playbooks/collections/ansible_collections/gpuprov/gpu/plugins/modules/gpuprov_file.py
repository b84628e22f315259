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
  - The file is written atomically. Before the first change, what was there (a file with its content, a
    symbolic link with its target, or nothing; owner, group and mode) is recorded in the state directory
    for C(gpuprov revert).
  - >-
    Symbolic links in the path are followed as inside C(chroot ROOT): an absolute link in an image tree
    means the image's path, never this machine's; a loop of links is refused. A link at the path itself is
    replaced, not followed.
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
  link_target:
    description: Make the path a symbolic link to this (what revert restores when the file was a link).
    type: str
  uid:
    description: Owner (a number, as in the tree's passwd) to give the file; unset keeps the writer's.
    type: int
  gid:
    description: Group (a number) to give the file; unset keeps the writer's.
    type: int
  secret:
    description:
      - The file is a secret (an API key). Its content never appears in the diff, the result or a log;
        they say C((secret, N bytes, changed)). Recorded as a secret for C(gpuprov revert), which puts it
        back with I(restore).
    type: bool
    default: false
  api_key:
    description:
      - Make the content an API key (letters and digits), unless the file holds one gpuprov made (its hash
        is recorded in I(state_dir)/keys.json; the key never is). A placeholder or a key written by hand is
        replaced, and the result says so. Implies I(secret).
    type: dict
    suboptions:
      env:
        description: The file is an environment file, C(ENV=KEY); unset, the key alone.
        type: str
      length:
        description: Letters and digits in a new key.
        type: int
        default: 43
  restore:
    description:
      - Put back what I(state_dir) recorded for I(path) before gpuprov's first change (content, mode, or
        its absence), read there and not passed in, so a secret does not travel through a plan. Implies
        I(record=false); a recorded secret stays one.
    type: bool
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
- name: Write the driver option that keeps CUDA alive over suspend, from gpuprov's template.
  gpuprov.gpu.gpuprov_file:
    path: /etc/modprobe.d/gpuprov-nvidia-preserve-vram.conf
    template: gpuprov-nvidia-preserve-vram.conf.j2
    vars:
      profile: rtx4090-laptop
      temporary_file_path: /var/tmp
    mode: "0644"

- name: Write a file's content as given, recorded for gpuprov revert.
  gpuprov.gpu.gpuprov_file:
    path: /etc/gpuprov/gpu-settings.json
    content: |
      {"profile": "rtx4090", "gpus": []}
    mode: "0644"

- name: Remove a drop-in gpuprov wrote, and its directory when empty, in an image tree.
  gpuprov.gpu.gpuprov_file:
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
import tempfile
from pathlib import Path
from typing import Any

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.gpuprov.gpu.plugins.module_utils.gpuprov_library import require_library


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
            "link_target": {"type": "str"},
            "uid": {"type": "int"},
            "gid": {"type": "int"},
            "secret": {"type": "bool", "default": False},
            # the key's settings (its variable, its length), not the key: the module makes it and never shows it
            "api_key": {
                "type": "dict",
                "no_log": False,
                "options": {"env": {"type": "str"}, "length": {"type": "int", "default": 43}},
            },
            "restore": {"type": "bool"},  # no default: a default counts as given in required_if
        },
        mutually_exclusive=[("content", "template", "link_target", "api_key", "restore")],
        required_if=[("state", "present", ("content", "template", "link_target", "api_key", "restore"), True)],
        supports_check_mode=True,
    )
    require_library(module)
    from provision import apikeys, applystate, roottree
    from provision.errors import GpuprovError
    from provision.render import render

    p = module.params
    if not p["path"].startswith("/"):
        module.fail_json(msg=f"path must be absolute, got {p['path']!r}")
    try:
        mode = int(p["mode"], 8)
    except ValueError:
        module.fail_json(msg=f"mode must be octal text like 0644, got {p['mode']!r}")
    root = Path(p["root"])
    target = root / p["path"].lstrip("/")
    link = p["link_target"]
    try:
        state_dir = Path(p["state_dir"]) if p["state_dir"] else applystate.state_dir(root)
        top = roottree.resolve(root, "/")
        target = roottree.resolve(root, p["path"], follow_last=False)  # never out of the tree through a link
        desired = None
        if p["state"] == "present" and link is None:
            desired = render(p["template"], p["vars"]) if p["template"] else p["content"]
        now = roottree.describe(target)
        if now["type"] == "other":
            module.fail_json(msg=f"{p['path']}: under {root} it is not a file or a symbolic link: move it away")
        current, current_mode = now["content"], None if now["mode"] is None else int(now["mode"], 8)
        secret, key_note = p["secret"] or p["api_key"] is not None, ""
        if p["restore"]:
            desired, link, mode, secret = _restore(p, state_dir, secret)
        if p["api_key"] is not None:
            desired, key_note = _api_key(state_dir, p["path"], now, p["api_key"])
        if secret:
            now["secret"] = True  # so recorded: revert puts it back with restore, never through a plan
            module.no_log_values.update(apikeys.hidden_values(current, desired))
        owner_wrong = roottree.owner_differs(now, p["uid"], p["gid"])
        if desired is None and link is None:
            changed = now["type"] != "absent"
        elif link is not None:
            changed = now["type"] != "symlink" or now["link_target"] != link or owner_wrong
        else:
            changed = now["type"] != "file" or current != desired or current_mode != mode or owner_wrong
        if changed and not module.check_mode:
            missing_dirs = []
            parent = target.parent
            while not parent.exists() and parent != top:
                missing_dirs.append("/" + str(parent.relative_to(top)))
                parent = parent.parent
            if p["record"]:  # what was there: type, content or link target, owner, group, mode
                applystate.record_previous(state_dir, "files", p["path"], {**now, "created_dirs": missing_dirs})
            if desired is None and link is None:
                target.unlink()
            elif link is not None:
                target.parent.mkdir(parents=True, exist_ok=True)
                roottree.place_symlink(target, link, uid=p["uid"], gid=p["gid"])
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
                with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as fh:
                    fh.write(desired)
                os.chmod(tmp, mode)
                if p["uid"] is not None or p["gid"] is not None:
                    os.chown(tmp, -1 if p["uid"] is None else p["uid"], -1 if p["gid"] is None else p["gid"])
                os.replace(tmp, target)
        if secret and changed and not module.check_mode:  # a key gpuprov made, or none to recognise
            apikeys.remember(state_dir, p["path"], desired if p["api_key"] is not None else None)
        removed_dirs = []
        if desired is None and link is None and not module.check_mode:
            # deepest first; also when the file was gone already (another file's removal left them empty)
            for d in sorted(p["remove_dirs"], key=lambda d: -d.count("/")):
                path = roottree.resolve(root, d, follow_last=False)
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
            "before": f"symlink to {now['link_target']}\n" if now["type"] == "symlink" else current or "",
            "after": f"symlink to {link}\n" if link is not None else desired or "",
            "before_header": f"{p['path']} ({'absent' if current is None else 'current'})",
            "after_header": f"{p['path']} ({'absent' if desired is None else 'desired'})",
        }
    if secret and "diff" in out:  # its size, never its content
        out["diff"].update(
            before=apikeys.describe(current), after=apikeys.describe(desired, changed=desired != current)
        )
    verb = "removed" if desired is None and link is None else "written"
    if module.check_mode:
        verb = "would be " + verb
    why = ", ".join(w for w in (key_note, *_metadata_changes(now, desired, mode, p["uid"], p["gid"])) if w)
    msg = f"{p['path']} {verb}" + (f" ({why})" if why else "")
    module.exit_json(msg=msg if changed else f"{p['path']} already as desired", **out)


def _restore(p: dict[str, Any], state_dir: Path, secret: bool) -> tuple[str | None, str | None, int, bool]:
    """(content, link target, mode, secret) as recorded before gpuprov's first change; also the owner and
    group into ``p`` where not given. Nothing is written back to the record (``record`` off)."""
    from provision import applystate, roottree
    from provision.errors import GpuprovError

    item = applystate.load_previous(state_dir)["files"].get(p["path"])
    if item is None:
        raise GpuprovError(f"{p['path']}: gpuprov recorded nothing for it in {state_dir}: nothing to restore")
    p["record"] = False
    for key in ("uid", "gid"):
        if p[key] is None and isinstance(item.get(key), int):
            p[key] = item[key]
    kind = roottree.record_type(item)
    mode = int(str(item.get("mode") or "0644"), 8)
    secret = secret or bool(item.get("secret"))
    if kind == "symlink":
        return None, str(item.get("link_target")), mode, secret
    return (item.get("content") if kind == "file" else None), None, mode, secret


def _api_key(state_dir: Path, path: str, now: dict[str, Any], spec: dict[str, Any]) -> tuple[str, str]:
    """The key file's content: the one there when gpuprov made it, else a new key; and why it was replaced."""
    from provision import apikeys
    from provision.errors import GpuprovError

    if spec["length"] < apikeys.MIN_KEY_LENGTH:
        raise GpuprovError(f"api_key.length must be at least {apikeys.MIN_KEY_LENGTH}, got {spec['length']}")
    current = now["content"] if now["type"] == "file" else None
    if apikeys.made_by_gpuprov(state_dir, path, current):
        return current or "", ""
    content = apikeys.key_content(apikeys.new_key(spec["length"]), spec["env"])
    if now["type"] == "absent":
        return content, "a new API key"
    return content, "a new API key: the one there was not made by gpuprov (a placeholder, or written by hand)"


def _metadata_changes(
    now: dict[str, Any], desired: str | None, mode: int, uid: int | None, gid: int | None
) -> list[str]:
    """What was wrong besides the content of a file that stays: "mode 0644 -> 0600", "owner 1000 -> 0"."""
    if now["type"] != "file" or desired is None:
        return []
    out = []
    if now["mode"] is not None and int(now["mode"], 8) != mode:
        out.append(f"mode {now['mode']} -> {mode:04o}")
    for key, name, want in (("uid", "owner", uid), ("gid", "group", gid)):
        if want is not None and now.get(key) != want:
            out.append(f"{name} {now.get(key)} -> {want}")
    return out


if __name__ == "__main__":
    main()
