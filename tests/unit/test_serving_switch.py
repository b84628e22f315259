"""A profile that no longer runs the server an earlier one set up (another engine, or none): the plan
disables and stops the old unit and removes its files and key; nothing else of the host is touched."""

from __future__ import annotations

from pathlib import Path

from provision.plan import make_plan
from provision.plantypes import FileState, HostState
from provision.profiles.loader import ProfileSet, builtin_dir, load_profile
from provision.serving.units import OLLAMA_DROPIN
from provision.systemd import UnitState
from tests.conftest import gathered, load_snapshot

PY = "/opt/gpuprov/bin/python"
VLLM_UNIT = "/etc/systemd/system/gpuprov-vllm.service"
VLLM_USER = "/etc/sysusers.d/gpuprov-vllm.conf"
VLLM_KEY = "/etc/gpuprov/serving/vllm.env"
SECRET = "VLLM_API_KEY=s3cr3t-never-in-a-plan\n"
#: Ollama's own unit as its installer writes it (scripts/install.sh)
OLLAMA_INSTALLED = UnitState("ollama.service", "/etc/systemd/system/ollama.service", True)


def builtin(name: str):
    return load_profile(name, [builtin_dir()])


def applied(name: str, root: Path, *, key: bool = True) -> HostState:
    """The host after `gpuprov apply NAME`: its serving files there (and in the tree), its unit enabled. Ollama
    is installed (its installer's unit): an Ollama profile plans only where it is."""
    from provision.plan import MANAGED_FILES, MANAGED_UNITS

    bare = HostState(
        python=PY,
        root=str(root),
        files={p: FileState(None) for p in MANAGED_FILES},
        units={u: UnitState(u, None, False) for u in MANAGED_UNITS} | {"ollama.service": OLLAMA_INSTALLED},
    )
    first = make_plan(*gathered(load_snapshot(name), builtin(name), bare))
    files = dict(bare.files)
    units = dict(bare.units)
    for f in first.desired.serving_files:
        files[f.path] = FileState(f.content, f.mode)
        (root / f.path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / f.path.lstrip("/")).write_text(f.content or "")
    for u in first.desired.serving_units:
        units[u.name] = UnitState(u.name, f"/etc/systemd/system/{u.name}", True)
    if key and first.desired.serving.get("key_file"):
        path = root / first.desired.serving["key_file"].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SECRET)
    return HostState(python=PY, root=str(root), files=files, units=units, systemd_running=True)


def rows(plan) -> dict[tuple[str, str], object]:
    return {(c.subject, c.setting): c for c in plan.changes}


def test_switching_from_vllm_to_ollama_removes_the_vllm_server(tmp_path: Path) -> None:
    """The audit's case: rtx4090 (Ollama) planned where rtx4090-laptop's vLLM server is installed."""
    host = applied("rtx4090-laptop", tmp_path)
    plan = make_plan(*gathered(load_snapshot("rtx4090"), builtin("rtx4090"), host))
    removed = {f.path: f for f in plan.desired.serving_files if f.content is None}
    assert set(removed) == {VLLM_UNIT, VLLM_USER, VLLM_KEY}
    assert all("no longer used (profile rtx4090 runs the ollama server)" in f.note for f in removed.values())
    (unit,) = [u for u in plan.desired.serving_units if u.name == "gpuprov-vllm.service"]
    assert (unit.enabled, unit.now) == (False, True)
    c = rows(plan)
    assert c[VLLM_UNIT, "content"].action == "change" and c[VLLM_UNIT, "content"].desired == "absent"
    assert "-ExecStart=" in c[VLLM_UNIT, "content"].diff
    assert c["gpuprov-vllm.service", "enabled"].action == "change"
    assert c[VLLM_KEY, "content"].desired == "absent"
    # the new server is there as before, and the key was never read
    assert any(f.path == OLLAMA_DROPIN and f.content for f in plan.desired.serving_files)
    assert "s3cr3t" not in str(plan.to_dict())


def test_switching_from_ollama_removes_the_drop_in_and_leaves_ollamas_unit(tmp_path: Path) -> None:
    host = applied("rtx4090", tmp_path)
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "mine.yaml").write_text("extends: rtx4090\nserving:\n  llama_cpp: {model: /m.gguf, server: /s}\n")
    plan = make_plan(*gathered(load_snapshot("rtx4090"), ProfileSet([builtin_dir(), d]).load("mine"), host))
    (dropin,) = [f for f in plan.desired.serving_files if f.path == OLLAMA_DROPIN]
    assert dropin.content is None and dropin.remove_dirs == ("/etc/systemd/system/ollama.service.d",)
    assert not any(u.name == "ollama.service" for u in plan.desired.serving_units)  # the vendor's: not disabled
    assert any(
        n.startswith("ollama.service (Ollama's own unit) stays as its installer set it up") for n in plan.desired.notes
    )
    assert plan.desired.serving["unit"] == "gpuprov-llama-cpp.service"


def test_a_profile_without_a_server_removes_the_one_gpuprov_set_up(tmp_path: Path) -> None:
    host = applied("rtx4090-laptop", tmp_path)
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "plain.yaml").write_text(
        "match: {gpu_names: ['NVIDIA GeForce RTX 4090 Laptop GPU']}\ngpu: {persistence: true}\n"
    )
    plan = make_plan(*gathered(load_snapshot("rtx4090-laptop"), ProfileSet([builtin_dir(), d]).load("plain"), host))
    assert {f.path for f in plan.desired.serving_files} == {VLLM_UNIT, VLLM_USER, VLLM_KEY}
    assert all(f.content is None and "runs no server" in f.note for f in plan.desired.serving_files)
    assert [(u.name, u.enabled) for u in plan.desired.serving_units] == [("gpuprov-vllm.service", False)]
    assert plan.desired.serving == {}


def test_the_same_profile_again_removes_nothing(tmp_path: Path) -> None:
    for name in ("rtx4090-laptop", "rtx4090"):
        host = applied(name, tmp_path / name)
        plan = make_plan(*gathered(load_snapshot(name), builtin(name), host))
        assert all(f.content is not None for f in plan.desired.serving_files), name
        assert all(u.enabled for u in plan.desired.serving_units), name
        serving = {f.path for f in plan.desired.serving_files} | {u.name for u in plan.desired.serving_units}
        assert serving and all(c.action == "ok" for c in plan.changes if c.subject in serving), name


def test_a_key_the_profile_stops_using_is_removed_with_nothing_else(tmp_path: Path) -> None:
    host = applied("rtx4090-laptop", tmp_path)
    d = tmp_path / "profiles"
    d.mkdir()
    (d / "nokey.yaml").write_text("extends: rtx4090-laptop\nserving: {api_key: false}\n")
    plan = make_plan(*gathered(load_snapshot("rtx4090-laptop"), ProfileSet([builtin_dir(), d]).load("nokey"), host))
    assert [f.path for f in plan.desired.serving_files if f.content is None] == [VLLM_KEY]
    assert [(u.name, u.enabled) for u in plan.desired.serving_units] == [("gpuprov-vllm.service", True)]


def test_another_hosts_snapshot_removes_nothing(tmp_path: Path) -> None:
    """--from: what is installed there is not known, so nothing is planned away."""
    host = HostState(known=False, python=PY, root=str(tmp_path))
    plan = make_plan(*gathered(load_snapshot("rtx4090"), builtin("rtx4090"), host))
    assert all(f.content is not None for f in plan.desired.serving_files)
    assert all(u.enabled for u in plan.desired.serving_units)
