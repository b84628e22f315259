"""Profiles: built-ins, layering and extends, and the loader's errors (file, key, what is allowed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provision.profiles import ProfileError
from provision.profiles.loader import ProfileSet, builtin_dir, default_dirs, load_profile, profile_set
from tests.conftest import load_snapshot

BUILTINS = ("datacenter", "h100", "rtx4080", "rtx4090", "rtx4090-laptop")


def layers(tmp_path: Path, system: dict[str, str] | None = None, user: dict[str, str] | None = None) -> ProfileSet:
    dirs = [builtin_dir(), tmp_path / "etc", tmp_path / "user"]
    for d, files in ((dirs[1], system or {}), (dirs[2], user or {})):
        d.mkdir(parents=True, exist_ok=True)
        for name, text in files.items():
            (d / name).write_text(text)
    return ProfileSet(dirs)


def test_builtins_load_and_carry_sources() -> None:
    profiles, errors = profile_set([builtin_dir()]).load_all()
    assert errors == []
    assert tuple(p.name for p in profiles) == BUILTINS
    for p in profiles:
        assert p.builtin
        assert p.sources, f"{p.name}: every built-in profile says where its numbers come from"


@pytest.mark.parametrize(
    ("profile", "snapshot", "fits"),
    [
        ("rtx4090", "rtx4090", True),
        ("rtx4090", "rtx4090-laptop", False),
        ("rtx4090-laptop", "rtx4090-laptop", True),
        ("rtx4090-laptop", "rtx4090", False),
        ("rtx4080", "rtx4080", True),
        ("h100", "h100", True),
        ("h100", "a100x2", False),
        ("datacenter", "a100x2", True),
        ("datacenter", "rtx4090", False),
    ],
)
def test_builtin_match(profile: str, snapshot: str, fits: bool) -> None:
    p = load_profile(profile, [builtin_dir()])
    gpu = load_snapshot(snapshot).gpus[0]
    assert p.match.matches(gpu.name, gpu.compute_capability) is fits


def test_builtin_numbers_against_specs() -> None:
    # seed 000: 250 W of the RTX 4090's 450 W default (NVIDIA spec), "50-60 %"; inside NVML's range
    desk = load_profile("rtx4090", [builtin_dir()]).gpu
    gpu = load_snapshot("rtx4090").gpus[0]
    assert desk.power_limit_w == 250
    assert gpu.power_default_limit_w == 450
    assert 0.5 <= desk.power_limit_w / gpu.power_default_limit_w <= 0.6
    assert gpu.power_min_limit_w <= desk.power_limit_w <= gpu.power_max_limit_w
    # seed 003: 110 W on the RTX 4090 Laptop, whose spec range is 80-150 W (+ Dynamic Boost)
    laptop = load_profile("rtx4090-laptop", [builtin_dir()])
    assert laptop.gpu.power_limit_w == 110
    assert 80 <= laptop.gpu.power_limit_w <= 150
    _lo, hi = laptop.gpu.fallback_locked_clocks_mhz
    assert 1455 <= hi <= 2040  # between the spec's boost clocks at 80 W and 150 W
    assert laptop.suspend.preserve_video_memory
    assert load_profile("h100", [builtin_dir()]).gpu.power_limit_percent == 100


def test_h100_extends_datacenter() -> None:
    p = load_profile("h100", [builtin_dir()])
    assert [Path(c).name for c in p.chain] == ["datacenter.yaml", "h100.yaml"]
    assert p.gpu.persistence is True
    assert p.match.gpu_names == ("NVIDIA H100*",)


def test_user_profile_extends_builtin_and_overrides(tmp_path: Path) -> None:
    ps = layers(tmp_path, user={"quiet.yaml": "extends: rtx4090\ngpu:\n  power_limit_percent: 50\n"})
    p = ps.load("quiet")
    # setting the percentage replaces the parent's absolute limit (one of an exclusive group)
    assert p.gpu.power_limit_percent == 50
    assert p.gpu.power_limit_w is None
    assert p.gpu.persistence is True
    assert p.match.gpu_names == ("NVIDIA GeForce RTX 4090",)
    assert not p.builtin


def test_same_name_extends_the_layer_below(tmp_path: Path) -> None:
    ps = layers(
        tmp_path,
        system={"rtx4090.yaml": "extends: rtx4090\ngpu: {power_limit_w: 280}\n"},
        user={"rtx4090.yaml": "extends: rtx4090\ngpu: {persistence: false}\n"},
    )
    p = ps.load("rtx4090")
    assert (p.gpu.power_limit_w, p.gpu.persistence) == (280, False)
    assert len(p.chain) == 3


def test_null_removes_an_inherited_key(tmp_path: Path) -> None:
    ps = layers(tmp_path, user={"mine.yaml": "extends: rtx4090-laptop\nsuspend: null\ngpu: {persistence: null}\n"})
    p = ps.load("mine")
    assert not p.suspend.preserve_video_memory
    assert p.gpu.persistence is None
    assert p.gpu.fallback_locked_clocks_mhz == (210, 1700)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gpu:\n  power_limt_w: 100\n", "key gpu: unknown key 'power_limt_w' (allowed: power_limit_w,"),
        ("tuning: {}\n", "unknown key 'tuning' (allowed: schema_version, description"),
        ("gpu: {power_limit_w: fast}\n", "key gpu.power_limit_w: expected a power limit in watts, got 'fast'"),
        ("gpu: {power_limit_w: -5}\n", "key gpu.power_limit_w: -5 is out of range"),
        ("gpu: {power_limit_w: .nan}\n", "key gpu.power_limit_w: expected a power limit in watts"),
        ("gpu: {power_limit_w: 100, power_limit_percent: 50}\n", "set power_limit_w or power_limit_percent"),
        ("gpu: {persistence: yes please}\n", "key gpu.persistence: expected true or false"),
        ("gpu: {power_limit_fallback: {locked_clocks_mhz: [1, 2]}}\n", "needs power_limit_w or power_limit_percent"),
        (
            "gpu: {power_limit_w: 100, power_limit_fallback: {locked_clocks_mhz: [1800, 900]}}\n",
            "the maximum (900 MHz) is below the minimum",
        ),
        ("match: {compute_capabilities: ['sm_89']}\n", "'sm_89' is not a compute capability like 8.9"),
        ("schema_version: 7\n", "reads profile schema_version 1, got 7"),
        ("extends: ../../etc/passwd\n", "key extends: expected the name of another profile"),
        ("gpu: [1, 2]\n", "key gpu: expected a mapping"),
        ("", "the file is empty"),
        ("gpu: {power_limit_w: 1\n", "not valid YAML (line 2)"),
        ("- just\n- a list\n", "expected a mapping with keys"),
    ],
)
def test_errors_name_file_key_and_what_is_allowed(tmp_path: Path, text: str, expected: str) -> None:
    ps = layers(tmp_path, user={"bad.yaml": text})
    with pytest.raises(ProfileError) as err:
        ps.load("bad")
    assert str(tmp_path / "user" / "bad.yaml") in str(err.value)
    assert expected in str(err.value)


def test_extends_errors(tmp_path: Path) -> None:
    ps = layers(
        tmp_path,
        user={
            "a.yaml": "extends: b\n",
            "b.yaml": "extends: a\n",
            "orphan.yaml": "extends: nothere\n",
        },
    )
    with pytest.raises(ProfileError, match="extend each other in a loop"):
        ps.load("a")
    with pytest.raises(ProfileError, match="no profile named 'nothere' to extend"):
        ps.load("orphan")


def test_unknown_name_and_bad_names(tmp_path: Path) -> None:
    ps = layers(tmp_path, user={"Bad Name.yaml": "{}\n"})
    with pytest.raises(ProfileError, match=r"no profile named 'nope' .*known: datacenter, h100"):
        ps.load("nope")
    assert any("a profile file is named NAME.yaml" in str(e) for e in ps.errors)
    with pytest.raises(ProfileError, match="is not a profile name"):
        load_profile("../x", [builtin_dir()])


def test_listing_reports_bad_files_but_keeps_the_good_ones(tmp_path: Path) -> None:
    ps = layers(tmp_path, user={"broken.yaml": "gpu: {power_limit_w: []}\n", "fine.yaml": "extends: rtx4080\n"})
    profiles, errors = ps.load_all()
    assert "fine" in [p.name for p in profiles]
    assert len(errors) == 1 and "broken.yaml" in str(errors[0])


def test_default_dirs_follow_xdg(tmp_path: Path) -> None:
    dirs = default_dirs(root=tmp_path, environ={"XDG_CONFIG_HOME": "/cfg", "HOME": "/home/u"})
    assert dirs[1:] == [tmp_path / "etc/gpuprov/profiles", Path("/cfg/gpuprov/profiles")]
    assert default_dirs(environ={"HOME": "/home/u"})[2] == Path("/home/u/.config/gpuprov/profiles")


def test_to_dict_round_trips_through_yaml(tmp_path: Path) -> None:
    import yaml

    p = load_profile("rtx4090-laptop", [builtin_dir()])
    data = p.to_dict()
    keep = ("description", "sources", "match", "gpu", "suspend", "serving", "stack")
    text = yaml.safe_dump({k: v for k, v in data.items() if k in keep})
    ps = layers(tmp_path, user={"copy.yaml": text})
    copy = ps.load("copy")
    assert copy.sections == p.sections and copy.match == p.match


def test_a_later_section_registers_without_breaking_existing_profiles(tmp_path: Path) -> None:
    from provision.profiles import SECTIONS, SectionType, register_section

    def parse(value, where):
        if not isinstance(value, dict) or set(value) - {"engine"}:
            raise where.error("expected {engine: NAME}")
        return dict(value)

    register_section("serving_test", SectionType(parse, dict))
    try:
        ps = layers(tmp_path, user={"srv.yaml": "extends: rtx4090\nserving_test: {engine: vllm}\n"})
        p = ps.load("srv")
        assert p.sections["serving_test"] == {"engine": "vllm"}
        assert p.gpu.power_limit_w == 250  # the existing sections are untouched
        assert load_profile("rtx4090", [builtin_dir()]).to_dict()["gpu"]["power_limit_w"] == 250
        with pytest.raises(ValueError, match="already defined"):
            register_section("gpu", SectionType(parse, dict))
    finally:
        del SECTIONS["serving_test"]


@pytest.mark.parametrize(
    "text, where",
    [
        ('description: "a \\ud800 b"\n', "description"),
        ('extends: rtx4090\nserving: {vllm: {model: "\\udfff"}}\n', "serving.vllm.model"),
        ('sources: ["ok", "\\ud83d"]\n', "sources[1]"),
    ],
)
def test_a_lone_surrogate_is_a_profile_error_not_a_crash(tmp_path: Path, text: str, where: str) -> None:
    """YAML's \\u escapes can spell half a character; it cannot be written to a unit, a file or a terminal."""
    ps = layers(tmp_path, user={"odd.yaml": text})
    with pytest.raises(ProfileError, match=rf"odd\.yaml: {re.escape(where)}: .*lone surrogate"):
        ps.load("odd")
