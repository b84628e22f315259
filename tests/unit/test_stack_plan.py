"""The `stack:` profile section: parsing, the environment's spec from the compat plan (or pins compat check
accepts), and the plan's decision about the environment at the server's path (create, keep, rebuild,
refuse) — all pure, from what the gather hook read."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.compat.plan import plan as compat_plan
from provision.compat.target import Target, target_from_snapshot
from provision.plan import make_plan
from provision.plantypes import HostState, PlanError
from provision.profiles import ProfileError
from provision.profiles.loader import ProfileSet, builtin_dir
from provision.stack.facts import StackHost
from provision.stack.planning import current_state
from provision.stack.section import StackSection
from provision.stack.spec import SpecInputs, StackError, make_spec
from tests.conftest import gathered, load_snapshot

BASE = "description: test\nmatch: {gpu_names: ['*']}\n"
VLLM = "serving:\n  vllm: {model: Qwen/Qwen3-4B, venv: /opt/gpuprov/envs/vllm}\n"


def load(tmp_path, body: str):
    d = tmp_path / "user"
    d.mkdir(exist_ok=True)
    (d / "mine.yaml").write_text(BASE + body)
    return ProfileSet([builtin_dir(), d]).load("mine")


def spec_for(tmp_path, body: str, snapshot: str = "rtx4090-laptop", **inputs):
    p = load(tmp_path, body)
    return make_spec(
        p.sections["stack"], p.sections.get("serving"), load_snapshot(snapshot), SpecInputs("3.11", **inputs)
    )


def test_section_parses_and_round_trips(tmp_path):
    p = load(
        tmp_path,
        VLLM + "stack:\n  python: '3.12'\n  versions: {vllm: 0.10.2, torch: 2.8.0}\n"
        "  packages: [hf-transfer>=0.1]\n  prune: [TorchVision]\n  keep: 2\n",
    )
    s = p.sections["stack"]
    assert s == StackSection(
        python="3.12",
        pins=(("torch", "2.8.0"), ("vllm", "0.10.2")),
        packages=("hf-transfer>=0.1",),
        prune=("torchvision",),
        keep=2,
    )
    assert p.to_dict()["stack"] == {
        "versions": {"torch": "2.8.0", "vllm": "0.10.2"},
        "python": "3.12",
        "packages": ["hf-transfer>=0.1"],
        "prune": ["torchvision"],
        "keep": 2,
    }


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("stack: {python: 'three'}\n", "a Python version like 3.12"),
        ("stack: {python: 'bin/python'}\n", "a Python version like 3.12"),
        ("stack: {versions: latest}\n", "expected auto or a mapping"),
        ("stack: {versions: {vllm: newest}}\n", "one exact version"),
        ("stack: {packages: ['not a requirement!']}\n", "is not a requirement"),
        ("stack: {packages: ['x @ https://example.com/x.whl']}\n", "not reproducible"),
        ("stack: {prune: ['torchvision>=0.1']}\n", "a package name only"),
        ("stack: {packages: [six], prune: [six]}\n", "both in packages and in prune"),
        ("stack: {cpu: true, arch: [89]}\n", "do not go together"),
        ("stack: {keep: 9}\n", "keep"),
        ("stack: {wheelhouse: wheels}\n", "absolute path"),
        ("stack: {colour: blue}\n", "colour"),
    ],
)
def test_bad_sections_are_one_clear_profile_error(tmp_path, body, message):
    with pytest.raises(ProfileError) as err:
        load(tmp_path, VLLM + body)
    assert message in str(err.value) and "\n" not in str(err.value)


@settings(max_examples=200, deadline=None)
@given(
    python=st.one_of(st.text(max_size=20), st.integers(), st.floats(allow_nan=False)),
    packages=st.lists(st.text(max_size=30), max_size=3),
    prune=st.lists(st.text(max_size=20), max_size=3),
    versions=st.one_of(st.just("auto"), st.dictionaries(st.text(max_size=10), st.text(max_size=10), max_size=3)),
)
def test_any_section_input_is_accepted_or_a_profile_error(python, packages, prune, versions):
    from provision.profiles.schema import _Where
    from provision.stack.section import parse_section

    value = {"python": python, "packages": packages, "prune": prune, "versions": versions}
    try:
        parse_section(value, _Where("mine.yaml", "stack"))
    except ProfileError as exc:
        assert str(exc).strip() and "\n" not in str(exc)


def test_auto_takes_the_compat_plan_for_this_gpu_and_driver(tmp_path):
    spec = spec_for(tmp_path, VLLM + "stack: {versions: auto}\n")
    snap = load_snapshot("rtx4090-laptop")
    chosen = compat_plan(Target(driver=target_from_snapshot(snap).driver, gpus=target_from_snapshot(snap).gpus))
    assert spec.pins == {p.name: p.version for p in chosen.pins}
    assert spec.constraints == tuple(p.requirement for p in chosen.pins)
    assert spec.requirements == tuple(chosen.install_requirements())
    assert spec.link == "/opt/gpuprov/envs/vllm"
    assert spec.home == f"/opt/gpuprov/envs/.vllm-{spec.digest[:12]}"
    assert spec.python == "3.11" and spec.build is None
    # the same inputs give the same directory; another set another
    assert spec_for(tmp_path, VLLM + "stack: {versions: auto}\n").home == spec.home
    assert spec_for(tmp_path, VLLM + "stack: {versions: auto, packages: [hf-transfer]}\n").home != spec.home


def test_a_gpu_the_newest_vllm_does_not_support_gets_an_older_set(tmp_path):
    from provision.snapshot import Snapshot
    from tests.conftest import SNAPSHOTS

    p = load(tmp_path, VLLM + "stack: {}\n")
    newest = spec_for(tmp_path, VLLM + "stack: {}\n", "rtx4090")
    turing_snap = Snapshot.load(SNAPSHOTS / "rtx2080x2.published.json")  # Turing, sm_75
    turing = make_spec(p.sections["stack"], p.sections["serving"], turing_snap, SpecInputs("3.11"))
    found = target_from_snapshot(turing_snap)
    expected = compat_plan(Target(driver=found.driver, gpus=found.gpus))
    assert turing.pins == {pin.name: pin.version for pin in expected.pins}
    assert turing.pins["vllm"] != newest.pins["vllm"]


def test_pins_compat_check_rejects_are_refused(tmp_path):
    with pytest.raises(StackError, match="compat check rejects these pins"):
        spec_for(tmp_path, VLLM + "stack: {versions: {vllm: 0.10.2, torch: 2.4.0}}\n")


def test_pins_without_the_engine_are_refused(tmp_path):
    with pytest.raises(StackError, match="pins no vllm"):
        spec_for(tmp_path, VLLM + "stack: {versions: {torch: 2.8.0}}\n")


def test_accepted_pins_are_used_as_given(tmp_path):
    spec = spec_for(tmp_path, VLLM + "stack: {versions: {vllm: 0.10.2, torch: 2.8.0}}\n")
    assert spec.pins == {"torch": "2.8.0", "vllm": "0.10.2"}
    assert spec.requirements[0] == "vllm" and "torch==2.8.0" in spec.constraints


def test_an_old_driver_is_told_to_upgrade_first(tmp_path):
    p = load(tmp_path, VLLM + "stack: {}\n")
    snap = load_snapshot("rtx4090-laptop")
    old = dataclasses.replace(snap, driver=dataclasses.replace(snap.driver, driver_version="470.256.02"))
    with pytest.raises(StackError, match="upgrade the driver"):
        make_spec(p.sections["stack"], p.sections["serving"], old, SpecInputs("3.11"))


@pytest.mark.parametrize(
    ("serving", "message"),
    [
        ("", "needs a serving section"),
        ("serving:\n  ollama: {}\n", "Ollama is a program with its own installer"),
        ("serving:\n  vllm: {model: m/x, executable: /usr/local/bin/vllm}\n", "set serving.vllm.venv"),
        ("serving:\n  llama_cpp: {model: /m/x.gguf, server: /usr/local/bin/llama-server}\n", "llama-server, a binary"),
    ],
)
def test_a_stack_needs_a_python_server(tmp_path, serving, message):
    with pytest.raises(StackError, match=message):
        spec_for(tmp_path, serving + "stack: {}\n")


def test_llama_cpp_stack_builds_llama_cpp_python_for_the_gpu_into_the_new_home(tmp_path):
    from provision.llama_build import gather_build_host

    body = "serving:\n  llama_cpp: {model: /srv/m.gguf, venv: /opt/gpuprov/envs/llama}\nstack: {}\n"
    snap = load_snapshot("rtx4090-laptop")
    spec = spec_for(tmp_path, body, build_host=gather_build_host(snap), mem_available_mib=16000)
    assert spec.build is not None and spec.build["python"] == f"{spec.home}/bin/python"
    assert f"llama-cpp-python[server]=={spec.pins['llama-cpp-python']}" in spec.build["command"]
    assert spec.build["command"][spec.build["command"].index("--python") + 1] == spec.build["python"]
    assert spec.indexes == ()  # built here, never the prebuilt wheel's index


def _facts(spec, **kw):
    return StackHost("3.11", **kw)


def test_state_create_ok_and_rebuild(tmp_path):
    spec = spec_for(tmp_path, VLLM + "stack: {}\n")
    record = {"link": spec.link, "digest": spec.digest, "complete": True, "homes": [spec.home]}
    installed = {name: version for name, version in spec.pins.items()}
    assert current_state(spec, _facts(spec))[0] == "create"
    same = _facts(spec, link_kind="symlink", link_target=spec.home, record=record, installed=installed)
    assert current_state(spec, same) == ("ok", "holds the planned set")
    # a local version label (+cu128) is the same version
    labelled = dict(installed, torch=installed["torch"] + "+cu128")
    assert current_state(spec, dataclasses.replace(same, installed=labelled))[0] == "ok"
    moved = dataclasses.replace(same, installed=dict(installed, torch="2.0.0"))
    state, why = current_state(spec, moved)
    assert state == "rebuild" and "torch 2.0.0" in why
    elsewhere = dataclasses.replace(same, link_target="/opt/gpuprov/envs/.vllm-000000000000")
    assert current_state(spec, elsewhere)[0] == "rebuild"


def _plan(tmp_path, body, facts_kw):
    p = load(tmp_path, body)
    snap = load_snapshot("rtx4090-laptop")
    snapshot, profile, host = gathered(snap, p, HostState(known=True, root="/"))
    host = dataclasses.replace(host, stack=dataclasses.replace(host.stack, **facts_kw))
    return make_plan(snapshot, profile, host)


def test_plan_row_and_desired_state(tmp_path):
    plan = _plan(tmp_path, VLLM + "stack: {prune: [torchvision]}\n", {"link_kind": "absent"})
    row = next(c for c in plan.changes if c.subject == "environment /opt/gpuprov/envs/vllm")
    assert row.action == "change" and row.current == "absent"
    assert row.desired.startswith("vllm ") and "+ vllm==" in row.diff
    stack = plan.desired.stack
    assert stack["state"] == "create" and stack["prune"] == ["torchvision"]
    assert any("unless something kept requires them" in n for n in plan.desired.notes)
    # the server is started in the same apply: the stack makes its program first
    assert not any("is not on this host" in n for n in plan.desired.notes)


def test_plan_refuses_a_directory_gpuprov_did_not_make(tmp_path):
    with pytest.raises(PlanError, match="a directory gpuprov did not make"):
        _plan(tmp_path, VLLM + "stack: {}\n", {"link_kind": "directory"})
    with pytest.raises(PlanError, match="which gpuprov did not make"):
        _plan(tmp_path, VLLM + "stack: {}\n", {"link_kind": "symlink", "link_target": "/opt/mine"})


def test_an_image_tree_gets_a_note_not_an_environment(tmp_path):
    p = load(tmp_path, VLLM + "stack: {}\n")
    snap = load_snapshot("rtx4090-laptop")
    snapshot, profile, host = gathered(snap, p, HostState(known=True, root=str(tmp_path), image=True))
    plan = make_plan(snapshot, profile, host)
    assert plan.desired.stack == {}
    assert any("made when this profile is applied with / as the root" in n for n in plan.desired.notes)


def test_a_package_changed_by_hand_is_said_and_the_environment_kept(tmp_path):
    spec = spec_for(tmp_path, VLLM + "stack: {}\n")
    installed = {**spec.pins, "transformers": "4.57.0"}
    record = {"link": spec.link, "digest": spec.digest, "complete": True, "homes": [spec.home], "installed": installed}
    moved = {**installed, "transformers": "4.58.1", "rich": "14.0.0"}
    plan = _plan(
        tmp_path,
        VLLM + "stack: {}\n",
        {"link_kind": "symlink", "link_target": spec.home, "record": record, "installed": moved},
    )
    assert plan.desired.stack["state"] == "ok"
    note = next(n for n in plan.desired.notes if "changed since gpuprov made it" in n)
    assert "transformers 4.57.0 -> 4.58.1" in note and "+rich 14.0.0" in note


@pytest.mark.parametrize(
    ("stack", "message"),
    [
        ("{versions: {vllm: 0.10.2, torch: 2.4.0}}", "compat check rejects these pins here"),
        ("{versions: {vllm: 'x.y'}}", "one exact version"),
        ("{packages: ['bad name!']}", "is not a requirement"),
    ],
)
def test_plan_refuses_bad_stack_input_with_one_line_and_exit_3_or_2(tmp_path, stack, message):
    import os
    import subprocess
    import sys

    from tests.conftest import SNAPSHOTS

    profiles = tmp_path / "config/gpuprov/profiles"
    profiles.mkdir(parents=True)
    (profiles / "bad.yaml").write_text(BASE + VLLM + f"stack: {stack}\n")
    env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
    env.pop("GPUPROV_NVML_REPLAY", None)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provision",
            "plan",
            "bad",
            "--from",
            str(SNAPSHOTS / "rtx4090-laptop.constructed.json"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode in (2, 3), proc
    assert message in proc.stderr and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stdout == ""


def test_a_child_switching_engine_drops_the_parents_stack_unless_it_sets_one(tmp_path):
    ollama = load(tmp_path, "extends: rtx4090-laptop\nserving:\n  api_key: false\n  ollama: {}\n")
    assert "stack" not in ollama.sections  # the parent's stack made vLLM's environment
    llama = "extends: rtx4090-laptop\nserving:\n  llama_cpp: {model: /m/x.gguf, venv: /opt/gpuprov/envs/llama-cpp}\n"
    assert "stack" not in load(tmp_path, llama).sections
    with_stack = load(tmp_path, llama + "stack: {cpu: true}\n").sections["stack"]
    assert with_stack.cpu and with_stack.prune == ("torchvision",)  # the child's keys over the parent's
    same_engine = load(tmp_path, "extends: rtx4090-laptop\nserving:\n  vllm: {model: Qwen/Qwen3-8B}\n")
    assert same_engine.sections["stack"].prune == ("torchvision",)  # still vLLM: the environment stays


def test_a_pinned_package_cannot_be_pruned(tmp_path):
    with pytest.raises(StackError, match="which the planned set pins"):
        spec_for(tmp_path, VLLM + "stack: {versions: {vllm: 0.10.2, torch: 2.8.0}, prune: [torch]}\n")
    with pytest.raises(StackError, match="which the planned set pins: a pinned package"):
        spec_for(tmp_path, VLLM + "stack: {prune: [flashinfer-python]}\n")  # auto: compat plan pins it
