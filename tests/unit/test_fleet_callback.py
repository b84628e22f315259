"""The gpuprov_fleet callback (the gpuprov.gpu collection's plugins/callback/gpuprov_fleet.py): the summary
row of a host for
every status it can end a rollout with, the table, the tally line and the JSON file, fed the events and
the stats ``ansible-playbook`` gives it (Ansible's own AggregateStats; plays, hosts and results stand-ins)."""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from ansible.executor.stats import AggregateStats
from hypothesis import given
from hypothesis import strategies as st

PLUGIN = (
    Path(__file__).resolve().parents[2]
    / "playbooks/collections/ansible_collections/gpuprov/gpu/plugins/callback/gpuprov_fleet.py"
)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpuprov_fleet_callback", PLUGIN)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fleet = _load()


# -- stand-ins for what ansible-playbook hands a callback ---------------------------------------------


@dataclass
class Host:
    name: str

    def get_name(self) -> str:
        return self.name


@dataclass
class Task:
    name: str

    def get_name(self) -> str:
        return self.name


@dataclass
class Result:
    _host: Host
    _task: Task
    _result: dict[str, Any]


def result(host: str, task: str = "a task", **res: Any) -> Result:
    return Result(Host(host), Task(task), res)


@dataclass
class Inventory:
    hosts: list[str]
    broken: bool = False

    def get_hosts(self, pattern: Any, ignore_restrictions: bool = False, order: Any = None) -> list[Host]:
        if self.broken:
            raise RuntimeError("no inventory")
        assert ignore_restrictions  # every host of the play, also those of later batches
        return [Host(h) for h in self.hosts]


@dataclass
class VariableManager:
    _inventory: Inventory
    host_vars: dict[str, dict[str, Any]]

    def get_vars(self, play: Any, host: Host) -> dict[str, Any]:
        return self.host_vars.get(host.name, {})


@dataclass
class Play:
    hosts: list[str]
    vars: dict[str, Any] = field(default_factory=lambda: {fleet.MARKER: True})
    host_vars: dict[str, dict[str, Any]] = field(default_factory=dict)
    order: str = "inventory"
    broken_inventory: bool = False

    def get_variable_manager(self) -> VariableManager:
        return VariableManager(Inventory(self.hosts, self.broken_inventory), self.host_vars)


class Display:
    def __init__(self) -> None:
        self.banners: list[str] = []
        self.lines: list[str] = []

    def banner(self, msg: str) -> None:
        self.banners.append(msg)

    def display(self, msg: str) -> None:
        self.lines.append(msg)


def callback() -> Any:
    cb = fleet.CallbackModule()
    cb._display = Display()
    return cb


def counted(stats: AggregateStats, host: str, **counts: int) -> None:
    for what, n in counts.items():
        for _ in range(n):
            stats.increment(what, host)


def selected(cb: Any, host: str, **fact: Any) -> None:
    """The play's set_fact of the host's choice, as the callback sees it."""
    cb.v2_runner_on_ok(result(host, "Record the choice for the fleet summary.", ansible_facts={fleet.FACT: fact}))


APPLY = {"action": "apply", "profile": "rtx4090", "gpus": ["1x NVIDIA GeForce RTX 4090"], "reason": ""}


def cells(line: str) -> list[str]:
    """A table line's cells (they are two spaces or more apart; a status may be two words)."""
    return re.split(r"\s{2,}", line.strip())


def by_host(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["host"]: r for r in rows}


# -- one status each --------------------------------------------------------------------------------


def test_a_host_with_changes_is_changed_and_says_which_tasks() -> None:
    cb, stats = callback(), AggregateStats()
    selected(cb, "a", **APPLY, done=True)
    cb.v2_runner_on_ok(result("a", "Ensure the GPU settings are applied.", changed=True))
    cb.v2_runner_on_ok(result("a", "Ensure the files are written.", changed=True))
    cb.v2_runner_on_ok(result("a", "Ensure the files are written.", changed=True))  # a loop: named once
    cb.v2_runner_on_ok(result("a", "Look at the GPU.", changed=False))
    counted(stats, "a", ok=7, changed=3, skipped=2)
    (row,) = cb.rows(stats, check_mode=False)
    assert row == {
        "host": "a",
        "status": "changed",
        "profile": "rtx4090",
        "gpus": ["1x NVIDIA GeForce RTX 4090"],
        "changed": 3,
        "ok": 7,
        "failed": 0,
        "skipped": 2,
        "unreachable": 0,
        "why": "changed: Ensure the GPU settings are applied.; Ensure the files are written.",
    }


def test_in_check_mode_a_host_with_changes_would_change() -> None:
    cb, stats = callback(), AggregateStats()
    selected(cb, "a", **APPLY, done=True)
    cb.v2_runner_on_ok(result("a", "Ensure the files are written.", changed=True))
    counted(stats, "a", ok=3, changed=1)
    (row,) = cb.rows(stats, check_mode=True)
    assert (row["status"], row["why"]) == ("would change", "would change: Ensure the files are written.")


def test_a_host_already_as_the_profile_says_is_unchanged() -> None:
    cb, stats = callback(), AggregateStats()
    selected(cb, "a", **APPLY, done=True)
    counted(stats, "a", ok=20, skipped=4)
    (row,) = cb.rows(stats, check_mode=False)
    assert (row["status"], row["why"], row["changed"], row["ok"]) == ("unchanged", "already as the profile says", 0, 20)


def test_a_host_whose_gpu_tasks_were_skipped_is_skipped_not_failed() -> None:
    cb, stats = callback(), AggregateStats()
    selected(
        cb, "cpu", action="skip", profile="auto", gpus=[], reason="no usable NVIDIA driver (no libnvidia-ml)", done=True
    )
    counted(stats, "cpu", ok=6, skipped=7)
    (row,) = cb.rows(stats, check_mode=False)
    assert row["status"] == "skipped"
    assert row["why"] == "GPU tasks skipped: no usable NVIDIA driver (no libnvidia-ml)"
    assert (row["failed"], row["profile"], row["gpus"]) == (0, "auto", [])


def test_a_failed_task_fails_the_host_and_its_message_is_why() -> None:
    cb, stats = callback(), AggregateStats()
    selected(cb, "a", **APPLY)
    stderr = "warming up\n\nnvmlDeviceSetPowerManagementLimit: Insufficient Permissions\n"
    cb.v2_runner_on_failed(result("a", "Apply the GPU settings.", msg="non-zero return code", stderr=stderr))
    cb.v2_runner_on_failed(result("a", "A later task.", msg="the second failure"))  # the first one is why
    counted(stats, "a", ok=4, failures=1)
    (row,) = cb.rows(stats, check_mode=False)
    assert row["status"] == "failed"
    assert row["why"] == (
        "Apply the GPU settings.: non-zero return code: nvmlDeviceSetPowerManagementLimit: Insufficient Permissions"
    )
    assert (row["failed"], row["profile"]) == (1, "rtx4090")


def test_a_module_failure_without_a_message_says_its_last_stderr_line() -> None:
    cb, stats = callback(), AggregateStats()
    cb.v2_runner_item_on_failed(result("a", "Run gpuprov.", module_stderr="Traceback ...\nImportError: no pynvml"))
    counted(stats, "a", failures=1)
    (row,) = cb.rows(stats, check_mode=False)
    assert (row["status"], row["why"]) == ("failed", "Run gpuprov.: ImportError: no pynvml")


def test_an_ignored_failure_is_not_a_failed_host() -> None:
    cb, stats = callback(), AggregateStats()
    selected(cb, "a", **APPLY, done=True)
    cb.v2_runner_on_failed(result("a", "Try something.", msg="it did not work"), ignore_errors=True)
    counted(stats, "a", ok=5, ignored=1)
    (row,) = cb.rows(stats, check_mode=False)
    assert row["status"] == "unchanged"


def test_a_host_that_failed_without_a_recorded_message_still_fails() -> None:
    cb, stats = callback(), AggregateStats()
    selected(cb, "a", **APPLY)
    counted(stats, "a", ok=2, failures=1)
    (row,) = cb.rows(stats, check_mode=False)
    assert (row["status"], row["why"]) == ("failed", "a task failed")


def test_an_unreachable_host_ansible_counted_unreachable() -> None:
    cb, stats = callback(), AggregateStats()
    cb.v2_runner_on_unreachable(result("gone", msg="Failed to connect to the host via ssh:\n  Connection refused"))
    cb.v2_runner_on_unreachable(result("gone", msg="a second try"))  # the first message is why
    counted(stats, "gone", dark=1)
    (row,) = cb.rows(stats, check_mode=False)
    assert (row["status"], row["why"]) == ("unreachable", "Failed to connect to the host via ssh: Connection refused")
    assert (row["unreachable"], row["failed"]) == (1, 0)


def test_an_unreachable_host_the_play_ignored_is_still_unreachable() -> None:
    """site.yml ignores the failed connection (its batch goes on): Ansible counts that task ok, ignored."""
    cb, stats = callback(), AggregateStats()
    cb.v2_playbook_on_play_start(Play(["gone", "b"], host_vars={"gone": {"gpuprov_profile": "h100"}}))
    cb.v2_runner_on_unreachable(result("gone", msg="Connection timed out"))
    counted(stats, "gone", ok=2, ignored=1)
    selected(cb, "b", **APPLY, done=True)
    counted(stats, "b", ok=9)
    rows = by_host(cb.rows(stats, check_mode=False))
    assert (rows["gone"]["status"], rows["gone"]["unreachable"], rows["gone"]["profile"]) == ("unreachable", 1, "h100")
    assert rows["b"]["status"] == "unchanged"
    assert cells(fleet.render_table([rows["gone"]]).splitlines()[1])[6] == "1"  # FAILED: failed + unreachable


def test_a_host_that_ran_but_did_not_get_to_the_end_was_stopped() -> None:
    cb, stats = callback(), AggregateStats()
    selected(cb, "b", **APPLY)  # no "done": the play ended for it (another host's failure aborted the batch)
    counted(stats, "b", ok=3)
    (row,) = cb.rows(stats, check_mode=False)
    assert (row["status"], row["why"]) == ("stopped", fleet.STOPPED)


def test_hosts_of_batches_that_never_started_are_not_run_with_their_inventory_profile() -> None:
    cb, stats = callback(), AggregateStats()
    play = Play(["a", "b", "c"], host_vars={"b": {"gpuprov_profile": "rtx4080"}})
    cb.v2_playbook_on_play_start(play)
    cb.v2_playbook_on_play_start(play)  # the next batch: the same play again, no host twice
    cb.v2_runner_on_failed(result("a", "Choose the host's profile.", msg="no profile named 'rtx4009'"))
    counted(stats, "a", ok=1, failures=1)
    rows = cb.rows(stats, check_mode=False)
    assert [r["host"] for r in rows] == ["a", "b", "c"]
    assert [r["status"] for r in rows] == ["failed", "not run", "not run"]
    assert [r["profile"] for r in rows] == ["auto", "rtx4080", "auto"]
    assert rows[1]["why"] == fleet.NOT_RUN
    assert rows[1]["ok"] == rows[1]["changed"] == rows[1]["failed"] == 0


def test_hosts_that_ran_but_were_not_planned_come_after_the_planned_ones() -> None:
    cb, stats = callback(), AggregateStats()
    cb.v2_playbook_on_play_start(Play(["b"]))
    cb.v2_runner_on_unreachable(result("x", msg="gone"))
    selected(cb, "b", **APPLY, done=True)
    counted(stats, "b", ok=1)
    counted(stats, "x", dark=1)
    assert [r["host"] for r in cb.rows(stats, check_mode=False)] == ["b", "x"]


def test_plays_that_are_not_fleet_plays_and_inventories_it_cannot_list_plan_nothing() -> None:
    cb = callback()
    cb.v2_playbook_on_play_start(Play(["a"], vars={}))
    cb.v2_playbook_on_play_start(Play(["b"], broken_inventory=True))
    assert cb._planned == []


# -- the output ---------------------------------------------------------------------------------------


def _run(cb: Any, stats: AggregateStats, monkeypatch: pytest.MonkeyPatch, path: Path, check: bool = False) -> None:
    monkeypatch.setenv("GPUPROV_FLEET_SUMMARY", str(path))
    monkeypatch.setattr(fleet.context, "CLIARGS", {"check": check})
    cb.v2_playbook_on_stats(stats)


def test_the_summary_prints_the_table_and_a_tally_and_writes_the_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cb, stats = callback(), AggregateStats()
    cb.v2_playbook_on_play_start(Play(["a", "cpu", "gone", "later"]))
    selected(cb, "a", **APPLY, done=True)
    cb.v2_runner_on_ok(result("a", "Ensure the files are written.", changed=True))
    counted(stats, "a", ok=5, changed=1)
    selected(cb, "cpu", action="skip", profile="auto", gpus=[], reason="no NVIDIA GPU", done=True)
    counted(stats, "cpu", ok=4, skipped=3)
    cb.v2_runner_on_unreachable(result("gone", msg="Connection refused"))
    counted(stats, "gone", dark=1)
    _run(cb, stats, monkeypatch, tmp_path / "summary.json")

    assert cb._display.banners == ["GPUPROV FLEET SUMMARY"]
    table, tally = cb._display.lines
    assert table.splitlines()[0].split() == [
        "HOST",
        "STATUS",
        "PROFILE",
        "GPUS",
        "CHANGED",
        "OK",
        "FAILED",
        "SKIPPED",
        "WHY",
    ]
    assert [cells(line)[:2] for line in table.splitlines()[1:]] == [
        ["a", "changed"],
        ["cpu", "skipped"],
        ["gone", "unreachable"],
        ["later", "not run"],
    ]
    assert tally == "1 unreachable, 1 not run, 1 changed, 1 skipped (4 hosts)"
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written == {"check_mode": False, "hosts": cb.rows(stats, check_mode=False)}


def test_the_tally_of_one_host_says_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cb, stats = callback(), AggregateStats()
    cb.v2_playbook_on_play_start(Play(["a"]))
    selected(cb, "a", **APPLY, done=True)
    cb.v2_runner_on_ok(result("a", "Ensure the files are written.", changed=True))
    counted(stats, "a", ok=2, changed=1)
    _run(cb, stats, monkeypatch, tmp_path / "summary.json", check=True)
    assert cb._display.banners == ["GPUPROV FLEET SUMMARY (check mode: nothing was changed)"]
    assert cb._display.lines[-1] == "1 would change (1 host)"
    assert json.loads((tmp_path / "summary.json").read_text())["check_mode"] is True


def test_a_run_without_a_fleet_play_prints_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cb, stats = callback(), AggregateStats()
    cb.v2_playbook_on_play_start(Play(["localhost"], vars={}))
    cb.v2_runner_on_failed(result("localhost", msg="local.yml failed"))
    counted(stats, "localhost", failures=1)
    _run(cb, stats, monkeypatch, tmp_path / "summary.json")
    assert cb._display.banners == [] and cb._display.lines == []
    assert not (tmp_path / "summary.json").exists()


def test_the_table_aligns_its_columns_and_fills_empty_cells() -> None:
    rows = [
        {
            "host": "a-long-name",
            "status": "changed",
            "profile": "rtx4090",
            "gpus": ["2x NVIDIA GeForce RTX 4090"],
            "changed": 12,
            "ok": 30,
            "failed": 0,
            "skipped": 8,
            "unreachable": 0,
            "why": "changed: x",
        },
        {
            "host": "b",
            "status": "not run",
            "profile": "",
            "gpus": [],
            "changed": 0,
            "ok": 0,
            "failed": 0,
            "skipped": 0,
            "unreachable": 0,
            "why": fleet.NOT_RUN,
        },
    ]
    lines = fleet.render_table(rows).splitlines()
    assert lines[0].index("STATUS") == lines[1].index("changed") == lines[2].index("not run")
    # the counts are right-aligned: their last digits end where the header's names end
    assert lines[1].index("12") + 2 == lines[0].index("CHANGED") + len("CHANGED")
    assert cells(lines[2])[2:4] == ["-", "-"]
    assert lines[2].endswith("  " + fleet.NOT_RUN)


_names = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)


@given(
    st.lists(
        st.fixed_dictionaries(
            {
                "host": _names,
                "status": st.sampled_from(fleet.STATUS_ORDER),
                "profile": st.one_of(st.just(""), _names),
                "gpus": st.lists(_names, max_size=3),
                "changed": st.integers(0, 999),
                "ok": st.integers(0, 999),
                "failed": st.integers(0, 9),
                "skipped": st.integers(0, 999),
                "unreachable": st.integers(0, 1),
                "why": st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
            }
        ),
        max_size=8,
    )
)
def test_every_row_is_one_line_with_its_status_under_the_header(rows: list[dict[str, Any]]) -> None:
    lines = fleet.render_table(rows).splitlines()
    assert len(lines) == len(rows) + 1
    status_col = lines[0].index("STATUS")
    for line, row in zip(lines[1:], rows, strict=True):
        assert line.startswith(row["host"])
        assert line[status_col:].startswith(row["status"])
        assert line.endswith("  " + row["why"])
