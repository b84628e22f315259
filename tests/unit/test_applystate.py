"""gpuprov's state directory: what is private, what a user may read, and clear errors."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from provision import applystate
from provision.applystate import StateError


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_previous_is_private_the_rest_readable(tmp_path: Path) -> None:
    d = tmp_path / "state"
    applystate.record_previous(d, "files", "/etc/x", {"content": "secret=1\n", "mode": "0600"})
    applystate.set_locked_clocks(d, "GPU-1", [210, 1700])
    applystate.set_applied_profile(d, "rtx4090")
    assert _mode(d) == 0o755
    assert _mode(d / "previous.json") == 0o600
    assert _mode(d / "applied.json") == 0o644 and _mode(d / "profile.json") == 0o644


def test_an_old_0700_directory_is_opened_up(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    applystate.set_locked_clocks(d, "GPU-1", None)
    assert _mode(d) == 0o755


def test_unreadable_state_says_sudo_not_move_it_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "state"
    applystate.set_locked_clocks(d, "GPU-1", [210, 1700])

    def denied(self: Path, *a: object, **k: object) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(StateError, match="only root can read gpuprov's state there: run this with sudo") as exc:
        applystate.recorded_locked_clocks(d)
    assert "move it away" not in str(exc.value)


def test_corrupt_state_names_the_cost_of_moving_it(tmp_path: Path) -> None:
    d = tmp_path / "state"
    d.mkdir()
    (d / "previous.json").write_text("{not json")
    with pytest.raises(StateError, match=r"not valid JSON.*revert can no longer restore"):
        applystate.load_previous(d)


def test_power_limit_refusals_survive_a_new_boot(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = tmp_path / "state"
    monkeypatch.setattr(applystate, "boot_id", lambda: "boot-1")
    applystate.set_power_limit_refused(d, "GPU-1", True)
    applystate.set_locked_clocks(d, "GPU-1", [210, 1700])
    assert applystate.power_limit_refused(d) == {"GPU-1"}
    monkeypatch.setattr(applystate, "boot_id", lambda: "boot-2")
    assert applystate.recorded_locked_clocks(d) == {}  # a reboot reset the lock
    applystate.set_locked_clocks(d, "GPU-1", [210, 1700])
    assert applystate.power_limit_refused(d) == {"GPU-1"}  # the driver still refuses
    applystate.set_power_limit_refused(d, "GPU-1", False)
    assert applystate.power_limit_refused(d) == set()


def test_second_lock_holder_waits_then_names_the_first(tmp_path: Path) -> None:
    d = tmp_path / "state"
    with applystate.exclusive_lock(d):
        assert applystate.lock_holder(d) == os.getpid()
        started = time.monotonic()
        busy = rf"^another gpuprov apply is running \(pid {os.getpid()}\)"
        with pytest.raises(StateError, match=busy), applystate.exclusive_lock(d, wait_s=0.3):
            pass
        assert time.monotonic() - started >= 0.3
    assert applystate.lock_holder(d) is None
    with applystate.exclusive_lock(d, wait_s=0):  # released: the next one gets it at once
        pass


def test_lock_that_cannot_be_made_is_one_line_or_skipped_when_optional(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    unwritable = blocker / "state"
    with pytest.raises(StateError, match="cannot take gpuprov's apply lock"), applystate.exclusive_lock(unwritable):
        pass
    with applystate.exclusive_lock(unwritable, required=False):
        pass
