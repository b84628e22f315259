# ruff: noqa: E402  (Ansible plugin layout: DOCUMENTATION before the imports, as ansible-test asks)
"""Ansible callback: the fleet summary of ``playbooks/site.yml``, one line per host.

Active whenever it is on the callback path (next to the playbook), and silent for plays whose vars do
not say ``gpuprov_fleet_summary: true`` (``local.yml``, anything else). The play's tasks record the
profile choice per host in the ``gpuprov_fleet_host`` fact. At the end of the run it prints

    HOST    STATUS     PROFILE   GPUS                        CHANGED  OK  FAILED  SKIPPED  WHY

and, when ``GPUPROV_FLEET_SUMMARY`` names a file, writes the same rows there as JSON
(``{"check_mode": bool, "hosts": [{"host", "status", "profile", "gpus", "changed", "ok", "failed",
"skipped", "unreachable", "why"}]}``). ``ansible-playbook`` exits non-zero when a host failed or was
unreachable; a host whose GPU tasks were skipped (no GPU, no driver, no matching profile) is not failed.
A host the play could not reach is reported unreachable, also when the play ignored that to go on with
the rest of its batch (site.yml does, so one unreachable host does not end the rollout).
"""

from __future__ import annotations

DOCUMENTATION = r"""
name: gpuprov_fleet
type: aggregate
short_description: Per-host summary of a gpuprov fleet rollout (profile, GPUs, task counts, why)
description:
  - Prints one table row per host at the end of C(playbooks/site.yml), and writes the rows as JSON to the
    file named by C(GPUPROV_FLEET_SUMMARY) when that is set.
  - Only plays with the variable C(gpuprov_fleet_summary) true are summarised; their hosts' profile choices
    come from the C(gpuprov_fleet_host) fact.
"""

import json
import os
from typing import Any

from ansible import context
from ansible.plugins.callback import CallbackBase

FACT = "gpuprov_fleet_host"
#: the play variable that marks a fleet play
MARKER = "gpuprov_fleet_summary"
#: why a host of a fleet play has no result: its batch never started
NOT_RUN = "not run: the rollout stopped after a batch failed more than max_fail_percentage"
#: why a host of a fleet play did not get to the end of the play without failing itself
STOPPED = "stopped before the end: the rollout was aborted (too many hosts of its batch failed)"
STATUS_ORDER = ("failed", "unreachable", "stopped", "not run", "changed", "unchanged", "would change", "skipped")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "gpuprov_fleet"
    CALLBACK_NEEDS_ENABLED = False

    def __init__(self) -> None:
        super().__init__()
        self._selected: dict[str, dict[str, Any]] = {}
        self._errors: dict[str, str] = {}
        self._unreachable: dict[str, str] = {}
        #: every host a fleet play was meant for, in inventory order
        self._planned: list[str] = []
        self._profiles: dict[str, str] = {}
        self._changed: dict[str, list[str]] = {}

    # -- collecting ---------------------------------------------------------------------------------

    def v2_playbook_on_play_start(self, play: Any) -> None:
        """A fleet play (its vars say ``gpuprov_fleet_summary: true``): remember every host it is meant
        for, also those of later batches (the inventory is restricted to the current batch here)."""
        if not play.vars.get(MARKER):
            return
        try:
            vm = play.get_variable_manager()
            hosts = list(vm._inventory.get_hosts(play.hosts, ignore_restrictions=True, order=play.order))
        except Exception:  # an inventory the callback cannot list: the summary shows the hosts that ran
            return
        for host in hosts:
            if host.name in self._planned:
                continue
            self._planned.append(host.name)
            try:
                profile = vm.get_vars(play=play, host=host).get("gpuprov_profile", "auto")
            except Exception:
                profile = "auto"
            self._profiles[host.name] = str(profile)

    def v2_runner_on_ok(self, result: Any) -> None:
        facts = result._result.get("ansible_facts") or {}
        host = result._host.get_name()
        if FACT in facts and isinstance(facts[FACT], dict):
            self._selected[host] = facts[FACT]
        if result._result.get("changed"):
            tasks = self._changed.setdefault(host, [])
            if result._task.get_name() not in tasks:
                tasks.append(result._task.get_name())

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        if ignore_errors:
            return
        name = result._host.get_name()
        res = result._result
        msg = str(res.get("msg") or "")
        stderr_text = str(res.get("stderr") or res.get("module_stderr") or "")
        stderr = [line for line in stderr_text.splitlines() if line.strip()]
        if stderr and (not msg or msg in ("non-zero return code", "MODULE FAILURE")):
            msg = f"{msg}: {stderr[-1].strip()}" if msg else stderr[-1].strip()
        self._errors.setdefault(name, f"{result._task.get_name()}: {' '.join(str(msg).split())}")

    def v2_runner_item_on_failed(self, result: Any) -> None:
        self.v2_runner_on_failed(result)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        msg = result._result.get("msg") or "unreachable"
        self._unreachable.setdefault(result._host.get_name(), " ".join(str(msg).split()))

    # -- summary ------------------------------------------------------------------------------------

    def rows(self, stats: Any, check_mode: bool) -> list[dict[str, Any]]:
        # planned hosts in inventory order, then any other host that ran (each once)
        names = list(dict.fromkeys((*self._planned, *self._selected, *self._errors, *self._unreachable)))
        rows = []
        for host in names:
            counts = stats.summarize(host) if host in stats.processed else {}
            sel = self._selected.get(host, {})
            changed = int(counts.get("changed", 0))
            if host in self._unreachable:
                status, why = "unreachable", self._unreachable[host]
            elif int(counts.get("failures", 0)) or host in self._errors:
                status, why = "failed", self._errors.get(host, "a task failed")
            elif host not in stats.processed:
                status, why = "not run", NOT_RUN
            elif not sel.get("done"):
                status, why = "stopped", STOPPED
            elif sel.get("action") == "skip":
                status, why = "skipped", f"GPU tasks skipped: {sel.get('reason') or 'no reason given'}"
            elif changed:
                status = "would change" if check_mode else "changed"
                why = ("would change: " if check_mode else "changed: ") + "; ".join(self._changed.get(host, []))
            else:
                status, why = "unchanged", "already as the profile says"
            rows.append(
                {
                    "host": host,
                    "status": status,
                    "profile": sel.get("profile") or self._profiles.get(host) or "",
                    "gpus": list(sel.get("gpus") or []),
                    "changed": changed,
                    "ok": int(counts.get("ok", 0)),
                    "failed": int(counts.get("failures", 0)),
                    "skipped": int(counts.get("skipped", 0)),
                    # site.yml ignores a host it cannot reach (so its batch goes on): Ansible counted it ok
                    "unreachable": max(int(counts.get("unreachable", 0)), int(host in self._unreachable)),
                    "why": why,
                }
            )
        return rows

    def v2_playbook_on_stats(self, stats: Any) -> None:
        if not self._planned and not self._selected:
            return  # not a fleet run
        check_mode = bool(context.CLIARGS.get("check", False))
        rows = self.rows(stats, check_mode)
        path = os.environ.get("GPUPROV_FLEET_SUMMARY")
        if path:
            with open(path, "w", encoding="utf-8") as fh:
                json.dump({"check_mode": check_mode, "hosts": rows}, fh, indent=2)
                fh.write("\n")
        self._display.banner("GPUPROV FLEET SUMMARY" + (" (check mode: nothing was changed)" if check_mode else ""))
        self._display.display(render_table(rows))
        tally: dict[str, int] = {}
        for row in rows:
            tally[row["status"]] = tally.get(row["status"], 0) + 1
        self._display.display(
            ", ".join(f"{tally[s]} {s}" for s in STATUS_ORDER if s in tally)
            + f" ({len(rows)} {'host' if len(rows) == 1 else 'hosts'})"
        )


def render_table(rows: list[dict[str, Any]]) -> str:
    header = ("HOST", "STATUS", "PROFILE", "GPUS", "CHANGED", "OK", "FAILED", "SKIPPED", "WHY")
    lines = [
        (
            r["host"],
            r["status"],
            r["profile"] or "-",
            ", ".join(r["gpus"]) or "-",
            str(r["changed"]),
            str(r["ok"]),
            str(r["failed"] + r["unreachable"]),
            str(r["skipped"]),
            r["why"],
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(line[i]) for line in lines)) if lines else len(h) for i, h in enumerate(header)]
    out = []
    for line in (header, *lines):
        cells = [c.rjust(w) if 4 <= i <= 7 else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))]
        out.append("  ".join(cells[:-1]) + "  " + line[-1])
    return "\n".join(out)
