"""The serving-environment builder (:func:`provision.stack.build.apply_spec`) with real uv, on cheap sets
(six, idna, a hand-made torch wheel): made beside the one in use and switched with one rename, recorded and
locked, idempotent, rebuilt on a new pin with ``keep`` earlier ones kept, removed on revert (only what gpuprov
made) — and every failure (an unknown package, no network, a full disk, an incompatible set) one line, the new
directory gone, the previous environment still linked and running.

Oracles: ``uv pip freeze`` run on its own (the lock file and the set read from metadata must equal it), the
environment's own interpreter importing what was installed, and the kernel's ``ENOSPC`` on a real 16 MiB tmpfs.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import os
import subprocess
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from provision.snapshot import Snapshot
from provision.stack.build import StackRefused, StackResult, apply_spec, remove_environments
from provision.stack.installed import installed_versions
from provision.stack.record import all_records, lock_path, read_record, record_path
from provision.stack.spec import StackError, StackSpec
from provision.stack.uvrun import _hidden, _uv

pytestmark = [pytest.mark.integration, pytest.mark.network]

SNAPSHOTS = Path(__file__).resolve().parents[1] / "data" / "snapshots"
SNAPSHOT = Snapshot.load(SNAPSHOTS / "rtx4090-laptop.constructed.json")  # driver 560.35.03
#: a version request: choose_interpreter takes the first installed 3.11 the server's sandbox can see
#: (Debian 12's /usr/bin/python3.11, the Python CI's machine has), never a pyenv one under /root
PYTHON = "3.11"


@dataclass
class Place:
    root: Path
    envs: Path
    state: Path
    log: Path

    @property
    def link(self) -> Path:
        return self.envs / "srv"

    def spec(self, requirements: tuple[str, ...], pins: dict[str, str], *, keep: int = 1) -> StackSpec:
        constraints = tuple(f"{name}=={version}" for name, version in pins.items())
        digest = hashlib.sha256(repr((requirements, constraints, keep)).encode()).hexdigest()
        return StackSpec(
            engine="llama_cpp",
            link=str(self.link),
            home=str(self.envs / f".srv-{digest[:12]}"),
            python=PYTHON,
            requirements=requirements,
            constraints=constraints,
            pins=pins,
            keep=keep,
            digest=digest,
        )

    def apply(self, spec: StackSpec, snapshot: Snapshot = SNAPSHOT) -> StackResult:
        return apply_spec(spec, snapshot, state_dir=self.state, log_path=self.log)


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Place:
    # a managed interpreter, if uv ever wanted one, goes here and not into /opt/gpuprov/python
    monkeypatch.setenv("GPUPROV_PYTHON_INSTALL_DIR", str(tmp_path / "pythons"))
    return Place(tmp_path, tmp_path / "envs", tmp_path / "state", tmp_path / "stack.log")


def six(place: Place, version: str, *, keep: int = 1) -> StackSpec:
    return place.spec(("six",), {"six": version}, keep=keep)


def runs(link: Path, module: str = "six") -> str:
    """What the environment at ``link`` says its ``module`` is, importing it with its own interpreter."""
    proc = subprocess.run(
        [str(link / "bin" / "python"), "-c", f"import {module}; print({module}.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def freeze(python: Path) -> str:
    return subprocess.run(
        [*_uv(), "pip", "freeze", "--python", str(python)], capture_output=True, text=True, check=True
    ).stdout


def snapshot_of(place: Place) -> dict[str, object]:
    """Everything a failed apply must leave as it was: the link, the directories, the record and lock."""
    files = {
        p: p.read_bytes()
        for p in (record_path(place.state, str(place.link)), lock_path(place.state, str(place.link)))
        if p.exists()
    }
    return {
        "link": os.readlink(place.link) if place.link.is_symlink() else None,
        "dirs": sorted(p.name for p in place.envs.iterdir()) if place.envs.is_dir() else [],
        "state": files,
    }


# --- create, no change, change ----------------------------------------------------------------------


def test_create_links_records_and_locks(place: Place) -> None:
    spec = six(place, "1.16.0")
    result = place.apply(spec)
    assert result.changed and result.home == spec.home and "(created)" in result.message
    assert place.link.is_symlink() and os.readlink(place.link) == spec.home
    assert runs(place.link) == "1.16.0"
    # the lock file is uv pip freeze of the environment, as uv itself prints it now
    frozen = freeze(place.link / "bin" / "python")
    assert lock_path(place.state, spec.link).read_text() == frozen
    assert "six==1.16.0" in frozen.splitlines()
    # the set read from metadata (nothing run) is the same set
    from_freeze = dict(line.split("==", 1) for line in frozen.splitlines() if "==" in line)
    assert installed_versions(Path(spec.home)) == from_freeze == result.installed
    record = read_record(place.state, spec.link)
    assert record is not None
    assert record["home"] == spec.home and record["homes"] == [spec.home] and record["digest"] == spec.digest
    assert record["complete"] is True and record["pins"] == {"six": "1.16.0"}
    assert record["installed"] == from_freeze
    # made from an interpreter the server's sandbox can see
    assert record["base_interpreter"] and not _hidden(record["base_interpreter"])
    assert set(result.phases) >= {"create the environment", "check the installed set", "lock and switch"}


def test_second_apply_changes_nothing(place: Place) -> None:
    spec = six(place, "1.16.0")
    place.apply(spec)
    watched = [Path(spec.home), Path(spec.home) / "lib", place.log, *place.state.rglob("*")]
    before = {p: p.stat().st_mtime_ns for p in watched} | {place.link: place.link.lstat().st_mtime_ns}
    log_size = place.log.stat().st_size
    again = place.apply(spec)
    assert not again.changed and "already holds six 1.16.0" in again.message
    assert again.installed["six"] == "1.16.0"
    after = {p: p.stat().st_mtime_ns for p in watched} | {place.link: place.link.lstat().st_mtime_ns}
    assert after == before and place.log.stat().st_size == log_size


def test_a_new_pin_builds_beside_switches_in_one_step_and_keeps_one(place: Place) -> None:
    first = place.apply(six(place, "1.16.0"))
    seen: set[str] = set()
    stop = threading.Event()
    missing: list[BaseException] = []

    def watch() -> None:  # the server's path is never absent while it switches (one more read after the stop)
        while True:
            done = stop.is_set()
            try:
                seen.add(os.readlink(place.link))
            except OSError as exc:
                missing.append(exc)
            if done:
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        second = place.apply(six(place, "1.17.0"))
    finally:
        stop.set()
        watcher.join()
    assert not missing and seen == {first.home, second.home}
    assert second.changed and f"switched from {first.home}" in second.message and second.removed == []
    assert runs(place.link) == "1.17.0" and runs(Path(first.home)) == "1.16.0"  # keep: 1 — the one before stays
    record = read_record(place.state, str(place.link))
    assert record is not None and record["homes"] == [first.home, second.home]
    third = place.apply(six(place, "1.15.0"))
    assert runs(place.link) == "1.15.0"
    assert third.removed == [first.home] and not Path(first.home).exists() and Path(second.home).is_dir()
    record = read_record(place.state, str(place.link))
    assert record is not None and record["homes"] == [second.home, third.home]
    assert sorted(p.name for p in place.envs.iterdir()) == sorted(
        ["srv", Path(second.home).name, Path(third.home).name]
    )


# --- bad input: one line, nothing changed, the previous environment serving --------------------------


def assert_left_as_it_was(place: Place, before: dict[str, object], failed: StackSpec, error: StackError) -> None:
    text = str(error)
    assert "\n" not in text and len(text) < 600, text
    assert not Path(failed.home).exists()
    assert snapshot_of(place) == before
    assert runs(place.link) == "1.16.0"


def test_an_unknown_package_is_one_line(place: Place) -> None:
    place.apply(six(place, "1.16.0"))
    before = snapshot_of(place)
    bad = place.spec(("six", "gpuprov-no-such-distribution-7f3a9c"), {"six": "1.16.0"})
    with pytest.raises(StackError) as err:
        place.apply(bad)
    assert "gpuprov-no-such-distribution-7f3a9c was not found in the package registry" in str(err.value)
    assert_left_as_it_was(place, before, bad, err.value)


def test_no_network_is_one_line(place: Place, monkeypatch: pytest.MonkeyPatch) -> None:
    place.apply(six(place, "1.16.0"))
    before = snapshot_of(place)
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL"):  # a closed port: connection refused at once
        monkeypatch.setenv(name, "http://127.0.0.1:9/simple")
    monkeypatch.setenv("UV_NO_CACHE", "1")  # nothing from the cache: idna must come from the index
    monkeypatch.setenv("UV_HTTP_RETRIES", "0")
    bad = place.spec(("six", "idna"), {"six": "1.16.0"})
    with pytest.raises(StackError) as err:
        place.apply(bad)
    assert str(err.value).startswith("install six, idna: ")
    assert "Connection refused" in str(err.value)
    assert_left_as_it_was(place, before, bad, err.value)


@pytest.fixture
def small_disk(place: Place):
    """The environments' directory on a 16 MiB tmpfs (real ENOSPC); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.fail("mounting a tmpfs needs root (CI runs the suite as root)")
    place.envs.mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(place.envs)], check=True)
    try:
        yield place
    finally:
        subprocess.run(["umount", str(place.envs)], check=True)


def test_a_full_disk_is_one_line(small_disk: Place) -> None:
    place = small_disk
    place.apply(six(place, "1.16.0"))  # a venv with six: well under 16 MiB
    before = snapshot_of(place)
    bad = place.spec(("six", "numpy"), {"six": "1.16.0", "numpy": "2.2.6"})  # numpy 2.2.6: ~60 MB installed
    with pytest.raises(StackError) as err:
        place.apply(bad)
    assert "no space left on the device" in str(err.value)
    assert_left_as_it_was(place, before, bad, err.value)
    # and its space is given back: the next small change fits
    assert place.apply(six(place, "1.17.0")).changed and runs(place.link) == "1.17.0"


def torch_wheel(directory: Path) -> Path:
    """A wheel named torch 2.7.1+cu128 carrying torch/version.py (what compat check reads: cuda = '12.8'),
    made here: the check reads metadata and files, so no 900 MB download is needed to make it say no."""
    dist, info = "torch-2.7.1+cu128", "torch-2.7.1+cu128.dist-info"
    files = {
        "torch/__init__.py": "from torch.version import __version__\n",
        "torch/version.py": "__version__ = '2.7.1+cu128'\ncuda = '12.8'\n",
        f"{info}/METADATA": "Metadata-Version: 2.1\nName: torch\nVersion: 2.7.1+cu128\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: gpuprov-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    rows = []
    for rel, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        rows.append(f"{rel},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*rows, f"{info}/RECORD,,"]) + "\n"
    path = directory / f"{dist}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for rel, text in files.items():
            zf.writestr(rel, text)
    return path


def test_a_set_compat_check_rejects_is_refused(place: Place) -> None:
    old_driver = Snapshot.load(SNAPSHOTS / "rtx3060-laptop.published.json")  # driver 515.65.01: CUDA < 11.8
    place.apply(six(place, "1.16.0"), old_driver)
    before = snapshot_of(place)
    wheel = torch_wheel(place.root)
    bad = place.spec(("six", str(wheel)), {"six": "1.16.0", "torch": "2.7.1"})
    with pytest.raises(StackRefused) as err:
        place.apply(bad, old_driver)
    assert "compat check says incompatible" in str(err.value) and "driver 515.65.01" in str(err.value)
    assert_left_as_it_was(place, before, bad, err.value)
    # the same set on a 560 driver (CUDA 12.6: minor-version compatibility, a warning) is installed: the
    # refusal above is the driver's, not the hand-made wheel's
    done = place.apply(bad, SNAPSHOT)
    assert done.changed and runs(place.link, "torch") == "2.7.1+cu128"
    assert done.check["verdict"] != "incompatible"


# --- what gpuprov did not make ----------------------------------------------------------------------


def test_revert_removes_only_what_gpuprov_made(place: Place) -> None:
    first = place.apply(six(place, "1.16.0"))
    second = place.apply(six(place, "1.17.0"))
    mine = place.envs / ".srv-mine"  # beside them, with a name like gpuprov's
    (mine / "bin").mkdir(parents=True)
    (mine / "bin" / "keep.txt").write_text("not gpuprov's\n")
    other = place.envs / "other"
    other.mkdir()
    removed = remove_environments(place.state, all_records(place.state))
    assert sorted(removed) == sorted([str(place.link), first.home, second.home])
    assert not place.link.exists() and not place.link.is_symlink()
    assert (mine / "bin" / "keep.txt").read_text() == "not gpuprov's\n" and other.is_dir()
    assert sorted(p.name for p in place.envs.iterdir()) == [".srv-mine", "other"]
    assert all_records(place.state) == [] and not lock_path(place.state, str(place.link)).exists()


def test_a_link_to_a_directory_gpuprov_did_not_make_is_refused(place: Place) -> None:
    mine = place.envs / "mine"
    (mine / "bin").mkdir(parents=True)
    place.link.symlink_to(mine)
    before = snapshot_of(place)
    spec = six(place, "1.16.0")
    with pytest.raises(StackError) as err:
        place.apply(spec)
    assert str(err.value) == f"{place.link} leads to {mine}, which gpuprov did not make: move the link away first"
    assert snapshot_of(place) == before and not Path(spec.home).exists() and before["state"] == {}
    assert not place.log.exists()  # refused before anything ran


def test_a_directory_at_the_servers_path_is_refused(place: Place) -> None:
    (place.link / "bin").mkdir(parents=True)
    spec = six(place, "1.16.0")
    with pytest.raises(StackError) as err:
        place.apply(spec)
    assert str(err.value) == f"{place.link} is a directory gpuprov did not make: move it away first"
    assert sorted(p.name for p in place.envs.iterdir()) == ["srv"] and not place.state.exists()


def test_an_environment_changed_by_hand_is_rebuilt_to_the_plan(place: Place) -> None:
    spec = six(place, "1.16.0")
    place.apply(spec)
    subprocess.run([*_uv(), "pip", "install", "-q", "--python", spec.python_exe, "six==1.17.0"], check=True)
    assert runs(place.link) == "1.17.0"
    again = place.apply(spec)
    # built beside the one in use (a generation of the same plan), then switched to: the old one kept
    assert again.changed and runs(place.link) == "1.16.0"
    assert again.home == spec.home + ".2" and os.readlink(place.link) == spec.home + ".2"
    assert runs(Path(spec.home)) == "1.17.0"  # the hand-changed one, untouched until keep removes it
    assert not place.apply(spec).changed  # and the rebuilt one holds the plan


# --- prune ------------------------------------------------------------------------------------------


def test_prune_removes_what_nothing_kept_requires_and_keeps_what_is_required(place: Place) -> None:
    # idna asked for beside six and pruned: nothing kept requires it — it goes, from the lock file too
    spec = dataclasses.replace(place.spec(("six", "idna"), {"six": "1.16.0"}), prune=("idna",))
    done = place.apply(spec)
    assert done.pruned == ["idna"] and done.kept == {}
    assert "idna" not in installed_versions(Path(spec.home)) and "idna" not in done.installed
    lock = lock_path(place.state, spec.link).read_text()
    assert lock == freeze(place.link / "bin" / "python") and "idna==" not in lock
    record = read_record(place.state, spec.link)
    assert record is not None and record["pruned"] == ["idna"]
    # requests requires idna: a candidate something kept requires stays, and the reason names it
    spec = dataclasses.replace(place.spec(("requests",), {"requests": "2.32.3"}), prune=("idna",))
    done = place.apply(spec)
    assert done.pruned == [] and done.kept == {"idna": "required by requests 2.32.3"}
    assert runs(place.link, "idna") and runs(place.link, "requests") == "2.32.3"
