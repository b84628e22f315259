"""vLLM options that depend on the release: read the installed vLLM from its dist-info in the profile's
virtualenv, and write what that release accepts (compat.toml [vllm_options], one table with sources)."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.version import Version

from provision.plan import make_plan
from provision.plantypes import FileState, HostState
from provision.profiles.loader import ProfileSet, builtin_dir, load_profile
from provision.serving.files import serving_files
from provision.serving.settings import VllmSettings
from provision.serving.vllm_versions import installed_vllm, vllm_options
from tests.conftest import gathered, load_snapshot

PY = "/opt/gpuprov/bin/python"
UNIT = "/etc/systemd/system/gpuprov-vllm.service"


def install_vllm(root: Path, version: str, venv: str = "opt/vllm", python: str = "python3.12") -> None:
    """What pip/uv leave in a virtualenv: site-packages/vllm-VERSION.dist-info/METADATA."""
    dist = root / venv / "lib" / python / "site-packages" / f"vllm-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.4\nName: vllm\nVersion: {version}\n\nvLLM\n")


def profile(tmp_path: Path):
    """The built-in laptop profile (attention backend) plus a swap space, as a user might set for old vLLM."""
    d = tmp_path / "profiles"
    d.mkdir(exist_ok=True)
    (d / "old.yaml").write_text(
        "extends: rtx4090-laptop\nserving:\n"
        "  vllm: {model: Qwen/Qwen3-4B-Instruct-2507-FP8, venv: /opt/vllm, attention_backend: FLASHINFER, "
        "swap_space_gib: 4}\n"
    )
    return ProfileSet([builtin_dir(), d]).load("old")


def unit(tmp_path: Path) -> tuple[str, list[str], list[str]]:
    """(ExecStart=, Environment= values, notes) of the vLLM unit rendered against the tree at tmp_path."""
    files = serving_files("old", profile(tmp_path).sections["serving"], python=PY, root=tmp_path)
    text = dict((p, c) for p, c, _, _ in files.files)[UNIT]
    lines = text.splitlines()
    (exec_start,) = [line.removeprefix("ExecStart=") for line in lines if line.startswith("ExecStart=")]
    env = [line.removeprefix("Environment=") for line in lines if line.startswith("Environment=")]
    return exec_start, env, files.notes


@pytest.mark.parametrize(
    ("version", "attention", "swap"),
    [
        ("0.11.2", "env", True),  # before --attention-backend: the variable that release reads
        ("0.12.0", "flag", True),
        ("0.17.1", "flag", True),  # the last release with swap_space in EngineArgs (unsloth-zoo#1210)
        ("0.18.0", "flag", False),
        ("0.19.1", "flag", False),  # what gpuprov compat plan recommends for the RTX 4090 Laptop
        ("0.29.0", "flag", False),
    ],
)
def test_the_unit_has_what_the_installed_vllm_accepts(tmp_path: Path, version: str, attention: str, swap: bool) -> None:
    install_vllm(tmp_path, version)
    exec_start, env, notes = unit(tmp_path)
    assert ("--attention-backend FLASHINFER" in exec_start) is (attention == "flag")
    assert ('"VLLM_ATTENTION_BACKEND=FLASHINFER"' in env) is (attention == "env")
    assert ("--swap-space 4" in exec_start) is swap
    dropped = [n for n in notes if n.startswith("serving.vllm.swap_space_gib is left out")]
    assert bool(dropped) is not swap
    if dropped:
        assert f"vLLM {version} in /opt/vllm is one of them" in dropped[0]


def test_an_unknown_vllm_gets_what_current_releases_accept(tmp_path: Path) -> None:
    """No vLLM in the venv yet (apply before installing it, gpuprov render): the recommended releases' options."""
    exec_start, env, notes = unit(tmp_path)
    assert "--attention-backend FLASHINFER" in exec_start and "--swap-space" not in exec_start
    assert not any("VLLM_ATTENTION_BACKEND" in e for e in env)
    assert any("the vLLM version in /opt/vllm is not known" in n for n in notes)


def test_the_version_comes_from_the_dist_info_and_must_be_one(tmp_path: Path) -> None:
    st = VllmSettings(model="m", venv="/opt/vllm")
    assert installed_vllm(st, tmp_path) is None
    install_vllm(tmp_path, "0.19.1")
    assert installed_vllm(st, tmp_path) == Version("0.19.1")
    # the executable form: the environment its bin/ belongs to
    assert installed_vllm(VllmSettings(model="m", executable="/opt/vllm/bin/vllm"), tmp_path) == Version("0.19.1")
    install_vllm(tmp_path, "0.11.0", python="python3.11")  # two releases: which one runs is not known
    assert installed_vllm(st, tmp_path) is None


def test_a_vllm_upgrade_changes_the_unit_in_the_plan(tmp_path: Path) -> None:
    """The unit follows the installed release, so an upgrade shows (and restarts) on the next apply."""
    install_vllm(tmp_path, "0.11.2", venv="opt/gpuprov/envs/vllm")
    snap, prof = load_snapshot("rtx4090-laptop"), load_profile("rtx4090-laptop", [builtin_dir()])
    host = HostState(files={}, python=PY, root=str(tmp_path))
    before = next(f.content for f in make_plan(*gathered(snap, prof, host)).desired.serving_files if f.path == UNIT)
    assert before is not None and "VLLM_ATTENTION_BACKEND" in before
    after_upgrade = HostState(files={UNIT: FileState(before, "0644")}, python=PY, root=str(tmp_path))
    (tmp_path / "opt/gpuprov/envs/vllm/lib/python3.12/site-packages/vllm-0.11.2.dist-info/METADATA").write_text(
        "Metadata-Version: 2.4\nName: vllm\nVersion: 0.19.1\n"
    )
    change = next(c for c in make_plan(*gathered(snap, prof, after_upgrade)).changes if c.subject == UNIT)
    assert (
        change.action == "change" and "+ExecStart=" in change.diff and "--attention-backend FLASHINFER" in change.diff
    )


def test_every_gated_option_says_where_its_releases_come_from() -> None:
    for key, option in vllm_options().items():
        assert key in VllmSettings.__dataclass_fields__
        assert option.since or option.until
        if option.since and option.until:
            assert Version(option.since) < Version(option.until)
        assert "vLLM PR #" in option.source or "vllm#" in option.source


def test_the_built_in_profile_runs_on_the_vllm_gpuprov_recommends_for_its_gpu(tmp_path: Path) -> None:
    """The audit's case: rtx4090-laptop on the vLLM `gpuprov compat plan` picks for the laptop's snapshot
    (0.19.1 when this was written) gets no option that release rejects, and loses none of the profile's."""
    from provision.compat.plan import plan
    from provision.compat.target import target_from_snapshot

    pins = {p.name: p.version for p in plan(target_from_snapshot(load_snapshot("rtx4090-laptop")), "vllm").pins}
    install_vllm(tmp_path, pins["vllm"])
    prof = load_profile("rtx4090-laptop", [builtin_dir()])
    files = serving_files(prof.name, prof.sections["serving"], python=PY, root=tmp_path)
    text = dict((p, c) for p, c, _, _ in files.files)[UNIT]
    recommended = Version(pins["vllm"])
    for key, option in vllm_options().items():
        accepted = (option.since is None or recommended >= Version(option.since)) and (
            option.until is None or recommended < Version(option.until)
        )
        assert accepted or f" {option.flag} " not in text, key
    assert files.notes == []  # the built-in profile sets nothing that vLLM leaves out
