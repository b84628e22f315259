# ruff: noqa: E402  (Ansible plugin layout: DOCUMENTATION before the imports, as ansible-test asks)
"""Ansible callback: one JSON line per task result (per loop item) for `gpuprov apply` to summarise.

Enabled by `gpuprov apply` (ANSIBLE_CALLBACKS_ENABLED=gpuprov_results); writes to the file named by
GPUPROV_RESULTS_FILE, and the name of each task as it starts to GPUPROV_PROGRESS_FILE when that is set
(the CLI shows it while the run goes on; gpuprov_stack adds its phases there). Each result line:
{"task", "item", "status" (ok/changed/failed/skipped/unreachable), "msg", "diff", "notes", "refusal",
"refused"}: ``notes`` and ``refusal`` are the gpuprov_plan module's (what the run's plan wants a person to
know; a profile refused before any change), so ``gpuprov apply`` never plans again; ``refused`` is a later
refusal (gpuprov_stack: the new environment failed compat check).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: gpuprov_results
type: aggregate
short_description: JSON lines of task results for gpuprov
description: Writes one JSON object per task result and loop item to the file in GPUPROV_RESULTS_FILE.
requirements: [GPUPROV_RESULTS_FILE set in the environment]
"""

import json
import os

from ansible.plugins.callback import CallbackBase


def _secret_safe(res: dict) -> dict | list | None:
    """The result's diff; of a secret file (gpuprov_file secret/api_key/restore) only what the module
    describes it by — ``(secret, N bytes)`` — should a module ever put content there."""
    diff = res.get("diff")
    if not isinstance(diff, dict | list):
        return None
    args = (res.get("invocation") or {}).get("module_args") or {}
    if not (args.get("secret") is True or args.get("api_key") or args.get("restore") is True):
        return diff
    safe = []
    for d in diff if isinstance(diff, list) else [diff]:
        if isinstance(d, dict):
            d = {k: v for k, v in d.items() if k.endswith("_header") or str(v).startswith(("(secret,", "(absent)"))}
            safe.append(d)
    return safe if isinstance(diff, list) else (safe[0] if safe else None)


#: tasks that are Ansible's plumbing, not something gpuprov did: includes, and the check of a role's
#: arguments against its meta/argument_specs.yml
SILENT_ACTIONS = frozenset(
    f"{prefix}{name}" for prefix in ("", "ansible.builtin.") for name in ("include_tasks", "validate_argument_spec")
)


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "gpuprov_results"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._path = os.environ.get("GPUPROV_RESULTS_FILE")
        self._progress = os.environ.get("GPUPROV_PROGRESS_FILE")

    def v2_playbook_on_task_start(self, task, is_conditional) -> None:
        if not self._progress or task.action in SILENT_ACTIONS:
            return
        with open(self._progress, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"task": task.get_name()}) + "\n")

    def _emit(self, result, status: str, item=None) -> None:
        if not self._path or result._task.action in SILENT_ACTIONS:
            return
        res = result._result
        label = None
        if item is not None:
            label = res.get("_ansible_item_label", item)
            if isinstance(label, dict):
                label = label.get("path") or label.get("name") or json.dumps(label, sort_keys=True)
        if status == "ok" and res.get("changed"):
            status = "changed"
        diff = _secret_safe(res)
        line = {
            "task": result._task.get_name(),
            "item": None if label is None else str(label),
            "status": status,
            "msg": str(res.get("msg", "")),
            "diff": diff if isinstance(diff, dict | list) else None,
            "check_mode": bool(res.get("_ansible_check_mode") or getattr(result._task, "check_mode", False)),
            "notes": [str(n) for n in res.get("notes") or [] if isinstance(n, str)],
            "refusal": bool(res.get("gpuprov_refusal")),
            "refused": bool(res.get("gpuprov_refused")),
        }
        with open(self._path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, default=str) + "\n")

    def _aggregate(self, result, status: str) -> None:
        if "results" in result._result:  # a loop: its items were reported one by one
            return
        self._emit(result, status)

    def v2_runner_on_ok(self, result) -> None:
        self._aggregate(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False) -> None:
        self._aggregate(result, "failed")

    def v2_runner_on_skipped(self, result) -> None:
        self._aggregate(result, "skipped")

    def v2_runner_on_unreachable(self, result) -> None:
        self._emit(result, "unreachable")

    def v2_runner_item_on_ok(self, result) -> None:
        self._emit(result, "ok", result._result.get("item"))

    def v2_runner_item_on_failed(self, result) -> None:
        self._emit(result, "failed", result._result.get("item"))

    def v2_runner_item_on_skipped(self, result) -> None:
        self._emit(result, "skipped", result._result.get("item"))
