"""provision.fleet.select: the profile a fleet host gets (named or auto), or why its GPU tasks are skipped."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.fleet import AUTO, auto_order, auto_profile, describe_gpus, select
from provision.profiles import ProfileError
from provision.profiles.loader import ProfileSet, builtin_dir
from provision.snapshot import GpuInfo, NvmlStatus, Snapshot
from tests.conftest import load_snapshot

BUILTINS = ProfileSet([builtin_dir()])


@pytest.mark.parametrize(
    ("snapshot", "profile"),
    [
        ("rtx4090", "rtx4090"),
        ("rtx4080", "rtx4080"),
        ("rtx4090-laptop", "rtx4090-laptop"),
        # both h100 and datacenter match; h100 names the model, datacenter only a compute capability
        ("h100", "h100"),
        ("a100x2", "datacenter"),
    ],
)
def test_auto_picks_the_builtin_profile_for_the_gpu(snapshot: str, profile: str) -> None:
    sel = select(load_snapshot(snapshot), AUTO, BUILTINS)
    assert (sel.action, sel.profile, sel.chosen_by, sel.reason) == ("apply", profile, "auto", "")


@pytest.mark.parametrize("snapshot", ["l4", "rtx3090ti", "rtx5090"])
def test_auto_skips_a_gpu_no_builtin_profile_fits(snapshot: str) -> None:
    snap = load_snapshot(snapshot)
    sel = select(snap, AUTO, BUILTINS)
    assert sel.action == "skip"
    assert sel.profile is None
    assert sel.reason == f"no built-in profile matches {snap.gpus[0].name}"
    assert sel.gpus == [f"1x {snap.gpus[0].name}"]


def test_auto_looks_at_builtin_profiles_only(tmp_path, monkeypatch) -> None:
    """A user profile in ~/.config/gpuprov/profiles matching everything does not win auto."""
    (tmp_path / "gpuprov/profiles").mkdir(parents=True)
    (tmp_path / "gpuprov/profiles/aaa-any.yaml").write_text(
        "schema_version: 1\ndescription: any\ngpu:\n  persistence: true\n"
    )
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    from provision.profiles.loader import profile_set

    assert "aaa-any" in profile_set().names()  # gpuprov plan/apply would find it
    assert select(load_snapshot("rtx4090"), AUTO).profile == "rtx4090"
    assert select(load_snapshot("l4"), AUTO).action == "skip"


def test_named_profile_that_does_not_match_is_skipped_with_the_reason() -> None:
    sel = select(load_snapshot("rtx4090-laptop"), "rtx4090", BUILTINS)
    assert (sel.action, sel.profile, sel.chosen_by) == ("skip", "rtx4090", "inventory")
    assert sel.reason == (
        "profile rtx4090 is for NVIDIA GeForce RTX 4090, compute capability 8.9, not NVIDIA GeForce RTX 4090 Laptop GPU"
    )


def test_named_profile_that_matches_is_applied() -> None:
    sel = select(load_snapshot("h100"), "datacenter", BUILTINS)
    assert (sel.action, sel.profile, sel.chosen_by) == ("apply", "datacenter", "inventory")


def test_unknown_profile_name_fails_instead_of_skipping() -> None:
    with pytest.raises(ProfileError, match="no profile named 'rtx9999'"):
        select(load_snapshot("rtx4090"), "rtx9999", BUILTINS)
    with pytest.raises(ProfileError, match="is not a profile name"):
        select(load_snapshot("rtx4090"), "../etc/passwd")


@pytest.mark.parametrize("requested", [AUTO, "rtx4090"])
def test_no_driver_is_skipped_before_any_profile_is_read(requested: str) -> None:
    snap = dataclasses.replace(
        load_snapshot("rtx4090"),
        driver=dataclasses.replace(
            load_snapshot("rtx4090").driver,
            nvml=NvmlStatus(ok=False, kind="library_not_found", message="libnvidia-ml.so.1 not found"),
        ),
        gpus=[],
    )
    sel = select(snap, requested, ProfileSet([]))  # no profile could even be loaded
    assert sel.action == "skip"
    assert sel.reason == "no usable NVIDIA driver (libnvidia-ml.so.1 not found)"
    assert sel.profile == (None if requested == AUTO else requested)


def test_driver_without_gpus_is_skipped() -> None:
    snap = dataclasses.replace(load_snapshot("rtx4090"), gpus=[])
    assert select(snap, AUTO, BUILTINS).reason == "no NVIDIA GPU"


def test_describe_gpus_counts_models_in_index_order() -> None:
    gpus = [GpuInfo(0, "NVIDIA L4"), GpuInfo(1, "NVIDIA H100 80GB HBM3"), GpuInfo(2, "NVIDIA L4")]
    assert describe_gpus(gpus) == ["2x NVIDIA L4", "1x NVIDIA H100 80GB HBM3"]


def test_mixed_host_gets_the_profile_matching_most_gpus() -> None:
    base = load_snapshot("h100")
    h100 = base.gpus[0]
    l4 = load_snapshot("l4").gpus[0]
    snap = dataclasses.replace(base, gpus=[dataclasses.replace(l4, index=0), dataclasses.replace(h100, index=1)])
    # h100 matches one GPU; datacenter (compute capability 8.0/9.0/10.0) also matches one: h100 names it
    assert select(snap, AUTO, BUILTINS).profile == "h100"


_NAMES = [
    "NVIDIA H100 80GB HBM3",
    "NVIDIA GeForce RTX 4090",
    "NVIDIA GeForce RTX 4090 Laptop GPU",
    "NVIDIA A100-SXM4-80GB",
    "NVIDIA L4",
    "NVIDIA GeForce RTX 4080",
]
_CCS = ["8.0", "8.9", "9.0", "10.0", "12.0"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_NAMES), st.sampled_from(_CCS)), min_size=1, max_size=4))
def test_auto_choice_is_the_best_fitting_builtin(gpus: list[tuple[str, str]]) -> None:
    """Whatever GPUs a host has: auto applies a profile that matches one of them and that no other
    built-in beats on (GPUs matched, names the model); it skips only when no built-in matches any."""
    snap = Snapshot(origin="test")
    snap.driver = dataclasses.replace(snap.driver, nvml=NvmlStatus(ok=True))
    snap.gpus = [GpuInfo(i, name, compute_capability=cc) for i, (name, cc) in enumerate(gpus)]
    loaded, errors = BUILTINS.load_all()
    assert not errors
    fitting = [p for p in loaded if any(p.match.matches(g.name, g.compute_capability) for g in snap.gpus)]
    sel = select(snap, AUTO, BUILTINS)
    if not fitting:
        assert sel.action == "skip" and auto_profile(snap, BUILTINS) is None
        return
    assert sel.action == "apply"
    chosen = next(p for p in loaded if p.name == sel.profile)
    assert all(auto_order(chosen, snap.gpus) <= auto_order(p, snap.gpus) for p in fitting)


# -- playbooks/site.yml: the rollout's batch settings, checked before any host is touched ---------------

SITE = Path(__file__).resolve().parents[2] / "playbooks/site.yml"
HOST_ROLE = (
    Path(__file__).resolve().parents[2] / "playbooks/collections/ansible_collections/gpuprov/gpu/roles/gpuprov_host"
)


def _fleet_play() -> dict[str, Any]:
    return yaml.safe_load(SITE.read_text())[0]


def _template(expr: str, **extra: Any) -> Any:
    """``expr`` templated the way ansible-playbook templates the fleet play's keywords (its vars, -e)."""
    from ansible.parsing.dataloader import DataLoader
    from ansible.template import Templar, trust_as_template

    play_vars = {k: trust_as_template(v) if isinstance(v, str) else v for k, v in _fleet_play()["vars"].items()}
    return Templar(loader=DataLoader(), variables={**play_vars, **extra}).template(trust_as_template(expr))


def _is_count(text: str, low: int, high: int | None = None) -> bool:
    return (
        text.isascii()
        and text.isdigit()
        and text == str(int(text))
        and int(text) >= low
        and (high is None or int(text) <= high)
    )


def _serial_item_ok(item: Any) -> bool:
    if isinstance(item, bool) or not isinstance(item, int | str):
        return False
    text = str(item)
    return _is_count(text[:-1], 1, 100) if text.endswith("%") else _is_count(text, 1)


def _max_fail_ok(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return False
    text = str(value).removesuffix("%")
    whole, dot, frac = text.partition(".")
    if not dot:
        return _is_count(whole, 0, 100)
    return _is_count(whole, 0, 99) and frac.isascii() and frac.isdigit()


_serial_items = st.one_of(
    st.integers(-3, 300),
    st.from_regex(r"-?[0-9]{1,4}(\.[0-9])?%?", fullmatch=True),
    st.text(max_size=6),
    st.booleans(),
    st.floats(-5, 200, allow_nan=False),
)


@settings(max_examples=150, deadline=None)
@given(st.one_of(_serial_items, st.lists(_serial_items, max_size=3), st.lists(st.lists(st.integers(1, 3)), max_size=2)))
def test_serial_check_accepts_exactly_what_ansible_can_batch_by(value: Any) -> None:
    """A number of hosts (1 or more) or a percentage (1%..100%), or a list of them: accepted, and Ansible
    makes a batch of at least one host of it for any fleet; anything else is refused (a traceback before)."""
    from ansible.utils.helpers import pct_to_int

    items = value if isinstance(value, list) else [value]
    expected = bool(items) and all(_serial_item_ok(i) for i in items)
    assert _template("{{ gpuprov_fleet_serial_valid }}", gpuprov_serial=value) is expected
    if expected:
        assert all(pct_to_int(str(i), hosts) >= 1 for i in items for hosts in (1, 3, 7, 40))


@settings(max_examples=150, deadline=None)
@given(
    st.one_of(
        st.integers(-3, 300),
        st.floats(-5, 200, allow_nan=False),
        st.booleans(),
        st.text(max_size=6),
        st.from_regex(r"-?[0-9]{1,3}(\.[0-9]{1,2})?%?", fullmatch=True),
    )
)
def test_max_fail_percentage_check_accepts_percentages_from_0_to_100(value: Any) -> None:
    expected = _max_fail_ok(value)
    assert _template("{{ gpuprov_fleet_max_fail_percentage_valid }}", gpuprov_max_fail_percentage=value) is expected
    if expected:  # what Ansible's percent keyword makes of it
        assert 0 <= float(str(value).replace("%", "")) <= 100


def test_the_defaults_are_a_quarter_of_the_hosts_and_a_quarter_failed() -> None:
    play = _fleet_play()
    assert _template(play["serial"]) == "25%"
    assert _template(play["max_fail_percentage"]) == 25


_SERIAL_HELP = "give a number of hosts per batch (2) or a percentage of the hosts (25%, at most 100%)"


@pytest.mark.parametrize(
    ("keyword", "var", "value", "message"),
    [
        ("serial", "gpuprov_serial", "abc", f"gpuprov_serial is abc: {_SERIAL_HELP}"),
        ("serial", "gpuprov_serial", "0", f"gpuprov_serial is 0: {_SERIAL_HELP}"),
        (
            "max_fail_percentage",
            "gpuprov_max_fail_percentage",
            "x%",
            "gpuprov_max_fail_percentage is x%: give a percentage",
        ),
    ],
)
def test_a_bad_batch_setting_fails_templating_with_one_line_saying_what_to_give(
    keyword: str, var: str, value: str, message: str
) -> None:
    from ansible.errors import AnsibleError

    with pytest.raises(AnsibleError, match=re.escape(message)):
        _template(_fleet_play()[keyword], **{var: value})


def test_the_host_role_never_becomes_root_on_the_controller() -> None:
    """Tasks delegated to the controller do not inherit site.yml's become: a controller user needs no sudo,
    and the wheel is not built as root."""
    tasks = yaml.safe_load((HOST_ROLE / "tasks/install.yml").read_text())
    delegated = [t for t in tasks if t.get("delegate_to") == "localhost"]
    assert len(delegated) >= 3
    assert [t["name"] for t in delegated if t.get("become") is not False] == []
