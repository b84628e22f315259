"""The serving section and the files it makes: schema, built-in settings from the seeds, command
lines and their quoting, golden files per built-in profile, plan integration and the fit warning."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.plan import make_plan
from provision.plantypes import FileState, HostState
from provision.profiles import ProfileError
from provision.profiles.loader import ProfileSet, builtin_dir, load_profile
from provision.render import RenderError
from provision.rendertree import rendered_files
from provision.serving.commandline import server_argv
from provision.serving.files import serving_files
from provision.serving.sandbox import interpreter_paths
from provision.serving.settings import LlamaCppSettings, OllamaSettings, VllmSettings
from provision.serving.units import OLLAMA_DROPIN
from provision.systemd import UnitState
from tests.conftest import gathered, load_snapshot

PY = "/opt/gpuprov/bin/python"
GOLDEN = Path(__file__).parents[1] / "data" / "serving" / "golden"
SERVING_PROFILES = ("rtx4080", "rtx4090", "rtx4090-laptop")


def builtin(name: str):
    return load_profile(name, [builtin_dir()])


def user_profile(tmp_path: Path, text: str, name: str = "mine"):
    (tmp_path / f"{name}.yaml").write_text(text)
    return ProfileSet([builtin_dir(), tmp_path]).load(name)


LLAMA = """
serving:
  port: 8081
  api_key: true
  llama_cpp:
    model: /srv/models/m.gguf
    server: /usr/local/bin/llama-server
    n_gpu_layers: 99
    ctx_size: 8192
    parallel: 2
    tensor_split: [3, 1]
    no_mmap: true
    flash_attention: true
    cache_type_k: q8_0
    cache_type_v: q8_0
"""


def unit_text(profile, *, python: str = PY, root: Path | None = None) -> dict[str, str]:
    files = serving_files(profile.name, profile.sections["serving"], python=python, root=root or Path("/nonexistent"))
    return {path: content for path, content, _, _ in files.files}


def directive(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


# -- built-in profiles: the seeds' settings ------------------------------------------------------------


def test_laptop_serves_vllm_with_the_seed_flags_on_loopback() -> None:
    s = builtin("rtx4090-laptop").sections["serving"]
    assert s.engine == "vllm" and s.host == "127.0.0.1" and s.port == 8000 and s.api_key
    assert isinstance(s.settings, VllmSettings)
    argv = server_argv(s)
    assert argv[:3] == ["/opt/gpuprov/envs/vllm/bin/vllm", "serve", "Qwen/Qwen3-4B-Instruct-2507-FP8"]
    pairs = dict(zip(argv[3::2], argv[4::2], strict=True))
    # the seed's --swap-space 8 is not there: the vLLM gpuprov recommends (0.19.1) rejects it
    assert pairs == {
        "--host": "127.0.0.1",
        "--port": "8000",
        "--gpu-memory-utilization": "0.85",
        "--max-model-len": "8192",
        "--kv-cache-dtype": "auto",
        "--quantization": "fp8",
        "--attention-backend": "FLASHINFER",
    }


@pytest.mark.parametrize("name", ["rtx4090", "rtx4080"])
def test_desktop_profiles_set_ollama_from_seed_000(name: str) -> None:
    text = unit_text(builtin(name))[OLLAMA_DROPIN]
    env = dict(v.strip('"').split("=", 1) for v in directive(text, "Environment"))
    assert env == {
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
        "CUDA_VISIBLE_DEVICES": "0",
        "OLLAMA_HOST": "127.0.0.1:11434",
        "OLLAMA_FLASH_ATTENTION": "1",
        "OLLAMA_NUM_PARALLEL": "4",
        "OLLAMA_MAX_LOADED_MODELS": "2",
        "OLLAMA_CONTEXT_LENGTH": "4096",
        "OLLAMA_GPU_OVERHEAD": "2147483648",
    }
    # a drop-in: no ExecStart (the vendor unit keeps its own), no [Install]
    assert not directive(text, "ExecStart") and "[Install]" not in text


def test_datacenter_profiles_have_no_server() -> None:
    for name in ("datacenter", "h100"):
        assert "serving" not in builtin(name).sections


# -- golden files ------------------------------------------------------------------------------------------


def rendered_tree(name: str) -> dict[str, str]:
    result = rendered_files(builtin(name), python=PY, root=Path("/nonexistent"))
    return {f.path: f.content for f in result.files}


@pytest.mark.parametrize("name", SERVING_PROFILES)
def test_golden_files(name: str) -> None:
    """Every file `gpuprov render` writes for a built-in profile, byte for byte. After an intended change:
    GPUPROV_UPDATE_GOLDEN=1 pytest tests/unit/test_serving.py, then review the diff."""
    tree = rendered_tree(name)
    base = GOLDEN / name
    if os.environ.get("GPUPROV_UPDATE_GOLDEN"):
        for path, content in tree.items():
            target = base / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
    on_disk = {"/" + str(p.relative_to(base)): p.read_text() for p in base.rglob("*") if p.is_file()}
    assert set(on_disk) == set(tree)
    for path, content in tree.items():
        assert content == on_disk[path], f"{name}: {path} differs from the golden file"


# -- the llama.cpp server ------------------------------------------------------------------------------


def test_llama_server_flags_key_by_credential(tmp_path: Path) -> None:
    prof = user_profile(tmp_path, LLAMA)
    files = serving_files("mine", prof.sections["serving"], python=PY, root=tmp_path)
    text = dict((p, c) for p, c, _, _ in files.files)["/etc/systemd/system/gpuprov-llama-cpp.service"]
    (exec_start,) = directive(text, "ExecStart")
    assert exec_start == (
        "/usr/local/bin/llama-server --model /srv/models/m.gguf --host 127.0.0.1 --port 8081 --n-gpu-layers 99 "
        "--ctx-size 8192 --parallel 2 --tensor-split 3,1 --flash-attn on --cache-type-k q8_0 --cache-type-v q8_0 "
        "--no-mmap --offline --api-key-file %d/api-key"
    )
    assert directive(text, "LoadCredential") == ["api-key:/etc/gpuprov/serving/llama-cpp.key"]
    assert not directive(text, "EnvironmentFile")
    assert files.key_file == "/etc/gpuprov/serving/llama-cpp.key" and files.key_format == "bare"
    assert files.key_content("k") == "k\n"
    assert directive(text, "User") == ["gpuprov-llama-cpp"] and directive(text, "Restart") == ["on-failure"]


def test_llama_cpp_python_server_flags_and_env_key(tmp_path: Path) -> None:
    prof = user_profile(
        tmp_path,
        """
serving:
  api_key: true
  llama_cpp:
    model: /srv/m.gguf
    venv: /opt/llama
    n_gpu_layers: 0
    ctx_size: 2048
    cache_type_k: q8_0
    no_mmap: true
    flash_attention: false
    tensor_split: [3, 1]
""",
    )
    s = prof.sections["serving"]
    assert server_argv(s) == [
        "/opt/llama/bin/python",
        "-m",
        "llama_cpp.server",
        "--model",
        "/srv/m.gguf",
        "--host",
        "127.0.0.1",
        "--port",
        "8080",
        "--n_gpu_layers",
        "0",
        "--n_ctx",
        "2048",
        "--flash_attn",
        "False",
        "--type_k",
        "8",
        "--use_mmap",
        "False",
        "--tensor_split",
        "3",
        "1",
    ]
    files = serving_files("mine", s, python=PY, root=tmp_path)
    assert files.key_file == "/etc/gpuprov/serving/llama-cpp.env" and files.key_content("k") == "API_KEY=k\n"


def test_a_venv_under_root_is_bound_into_the_sandbox(tmp_path: Path) -> None:
    """ProtectHome= hides /root and /home: a pyenv/uv interpreter there must be bound read-only."""
    venv = tmp_path / "root/envs/llama"
    (venv / "bin").mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /root/.pyenv/versions/3.11.7/bin\nversion_info = 3.11.7\n")
    assert interpreter_paths("/root/envs/llama/bin/python", tmp_path) == [
        "/root/envs/llama",
        "/root/.pyenv/versions/3.11.7",
    ]
    prof = user_profile(tmp_path, "serving:\n  llama_cpp: {model: /root/models/m.gguf, venv: /root/envs/llama}\n")
    text = unit_text(prof, root=tmp_path)["/etc/systemd/system/gpuprov-llama-cpp.service"]
    assert directive(text, "ProtectHome") == ["tmpfs"]
    assert directive(text, "BindReadOnlyPaths") == [
        "/root/.pyenv/versions/3.11.7",
        "/root/envs/llama",
        "/root/models/m.gguf",
    ]
    plain = user_profile(tmp_path, "serving:\n  llama_cpp: {model: /srv/m.gguf, venv: /opt/llama}\n", "plain")
    assert directive(unit_text(plain)["/etc/systemd/system/gpuprov-llama-cpp.service"], "ProtectHome") == ["yes"]


def test_the_unit_keeps_the_gpu_reachable_and_jit_possible() -> None:
    text = unit_text(builtin("rtx4090-laptop"))["/etc/systemd/system/gpuprov-vllm.service"]
    assert directive(text, "DevicePolicy") == ["closed"] and directive(text, "PrivateDevices") == ["no"]
    assert {"char-nvidia-uvm rw", "char-nvidia-frontend rw", "char-nvidiactl rw"} <= set(directive(text, "DeviceAllow"))
    assert directive(text, "MemoryDenyWriteExecute") == ["no"]
    assert directive(text, "ExecStartPre") == [f"{PY} -m provision wait-gpu --timeout-s 120 --gpus 0"]
    assert "nvidia-persistenced.service" in directive(text, "After")[0]
    assert "nvidia-persistenced.service" in directive(text, "Wants")[0]
    assert "network-online.target" in directive(text, "Wants")[0]
    assert directive(text, "EnvironmentFile") == ["/etc/gpuprov/serving/vllm.env"]
    assert "VLLM_API_KEY" not in "".join(directive(text, "Environment"))


# -- schema --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("serving: {vllm: {model: m, venv: /v}, ollama: {}}\n", "expected exactly one server"),
        ("serving: {port: 80}\n", "expected exactly one server"),
        ("serving: {vllm: {venv: /v}}\n", "key serving.vllm: expected model"),
        ("serving: {vllm: {model: m}}\n", "set exactly one of venv or executable"),
        ("serving: {vllm: {model: m, venv: /v, executable: /v/bin/vllm}}\n", "set exactly one of venv or executable"),
        ("serving: {vllm: {model: m, venv: /my venv}}\n", "must be a plain absolute path"),
        ("serving: {vllm: {model: m, venv: relative}}\n", "an absolute path"),
        ("serving: {vllm: {model: m, venv: /v, kv_cache_dtype: fp16}}\n", "'fp16' is not one of auto, fp8"),
        ("serving: {vllm: {model: m, venv: /v, gpu_memory_utilization: 1.5}}\n", "out of range"),
        ("serving: {vllm: {model: m, venv: /v, attention_backend: magic}}\n", "is not one of FLASH_ATTN"),
        ('serving: {vllm: {model: "a\\nb", venv: /v}}\n', "cannot contain a newline"),
        ('serving: {vllm: {model: m, venv: /v, extra_args: ["--x\\n--y"]}}\n', "cannot contain a newline"),
        ('serving: {vllm: {model: m, venv: /v, extra_args: "--a --b"}}\n', "expected a list of arguments"),
        ("serving: {host: localhost, ollama: {}}\n", "'localhost' is not an IP address"),
        ("serving: {port: 70000, ollama: {}}\n", "expected a TCP port from 1 to 65535"),
        ("serving: {gpus: [0, 0], ollama: {}}\n", "names a GPU twice"),
        ("serving: {api_key: true, ollama: {}}\n", "Ollama has no API key"),
        ("serving: {ollama: {keep_alive: soon}}\n", "is not a duration"),
        ("serving: {ollama: {kv_cache_type: q2_k}}\n", "is not one of f16, q8_0, q4_0"),
        ("serving: {llama_cpp: {model: m.gguf, server: /s}}\n", "expected the absolute path of a GGUF file"),
        ("serving: {llama_cpp: {model: /m.gguf, venv: /v, parallel: 4}}\n", "llama-server option"),
        ("serving: {llama_cpp: {model: /m.gguf, server: /s, tensor_split: [0, 0]}}\n", "at least one proportion"),
        ("serving: {llama_cpp: {model: /m.gguf, server: /s, bogus: 1}}\n", "unknown key 'bogus'"),
        # a model id is a positional argument: one starting with '-' would be read as an option
        ('serving: {vllm: {model: "--trust-remote-code", venv: /v}}\n', "cannot start with '-'"),
        ('serving: {vllm: {model: "-x", venv: /v}}\n', "cannot start with '-'"),
        # where the server listens, and its key, are profile keys that plan and doctor read
        ('serving: {vllm: {model: m, venv: /v, extra_args: ["--host", "0.0.0.0"]}}\n', "set serving.host instead"),
        ('serving: {vllm: {model: m, venv: /v, extra_args: ["--port=9000"]}}\n', "set serving.port instead"),
        ('serving: {vllm: {model: m, venv: /v, extra_args: ["--ho", "::"]}}\n', "set serving.host instead"),
        ('serving: {vllm: {model: m, venv: /v, extra_args: ["--api-key", "k"]}}\n', "set serving.api_key: true"),
        (
            'serving: {llama_cpp: {model: /m.gguf, server: /s, extra_args: ["--host", "0.0.0.0"]}}\n',
            "set serving.host instead",
        ),
        (
            'serving: {llama_cpp: {model: /m.gguf, venv: /v, extra_args: ["--api_key", "k"]}}\n',
            "set serving.api_key: true",
        ),
    ],
)
def test_bad_serving_settings_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ProfileError) as exc:
        user_profile(tmp_path, text)
    assert message in exc.value.message
    assert str(tmp_path / "mine.yaml") in exc.value.message


def test_extending_a_profile_can_switch_the_engine(tmp_path: Path) -> None:
    """rtx4090 serves Ollama; a user profile extending it with llama_cpp drops the ollama block."""
    prof = user_profile(tmp_path, "extends: rtx4090\nserving:\n  llama_cpp: {model: /m.gguf, server: /s}\n")
    s = prof.sections["serving"]
    assert s.engine == "llama_cpp" and isinstance(s.settings, LlamaCppSettings)
    assert s.gpus == (0,)  # kept from the parent
    port = user_profile(tmp_path, "extends: rtx4090\nserving: {port: 11500}\n", "port")
    assert port.sections["serving"].port == 11500 and isinstance(port.sections["serving"].settings, OllamaSettings)


@pytest.mark.parametrize(
    ("child", "port"),
    [
        ("serving:\n  llama_cpp: {model: /m.gguf, server: /s}\n", 8080),  # a switch: the new engine's default
        ("serving:\n  vllm: {model: m, venv: /v}\n", 8000),
        ("serving:\n  port: 9000\n  vllm: {model: m, venv: /v}\n", 9000),  # a switch with a port: that one
        ("serving:\n  ollama: {num_parallel: 2}\n", 11434),  # the same engine: the parent's port
    ],
)
def test_switching_engine_resets_the_port_to_the_new_engines_default(tmp_path: Path, child: str, port: int) -> None:
    """rtx4090 sets port 11434 (Ollama's): a child serving llama.cpp would otherwise listen there."""
    s = user_profile(tmp_path, "extends: rtx4090\n" + child).sections["serving"]
    assert s.port == port
    assert s.gpus == (0,)  # what is not the engine's is still inherited


def test_a_parents_own_port_is_kept_for_its_engine_and_dropped_on_a_switch(tmp_path: Path) -> None:
    user_profile(tmp_path, "serving:\n  port: 11500\n  ollama: {}\n", "base")
    same = user_profile(tmp_path, "extends: base\nserving: {gpus: [0]}\n", "same")
    assert same.sections["serving"].port == 11500
    other = user_profile(tmp_path, "extends: base\nserving: {llama_cpp: {model: /m.gguf, server: /s}}\n", "other")
    assert other.sections["serving"].port == 8080


def test_to_dict_reads_back(tmp_path: Path) -> None:
    prof = user_profile(tmp_path, LLAMA)
    again = user_profile(
        tmp_path,
        "serving: " + repr(prof.to_dict()["serving"]).replace("True", "true").replace("False", "false") + "\n",
        "again",
    )
    assert again.sections["serving"] == prof.sections["serving"]


# -- quoting: nothing a value says can add a directive or change another argument ------------------------

#: a model name (or argument) -> how it must appear on the ExecStart= line (systemd.service(5),
#: "Command lines": double quotes with C escapes; %% and $$ for literal % and $)
QUOTED = {
    "my model": '"my model"',
    'say "hi"': '"say \\"hi\\""',
    "$HOME": '"$$HOME"',
    "${PATH}": '"$${PATH}"',
    "100%": '"100%%"',
    "%d": '"%%d"',
    "a;b": '"a;b"',
    ";": '";"',
    "back\\slash": '"back\\\\slash"',
    "'single'": "\"'single'\"",
    "org/model-7B_v1.5": "org/model-7B_v1.5",
}


@pytest.mark.parametrize(("model", "quoted"), QUOTED.items())
def test_values_are_quoted_for_exec_start(model: str, quoted: str) -> None:
    (line,) = directive(unit_text_of(load_vllm(model)), "ExecStart")
    assert line.startswith(f"/opt/vllm/bin/vllm serve {quoted} --host 127.0.0.1 ")
    assert line.endswith(" " + quoted)  # the same value as an extra argument


def load_vllm(model: str):
    from provision.serving.settings import ServingSection

    return ServingSection("vllm", VllmSettings(model=model, venv="/opt/vllm", extra_args=(model,)), port=8000)


def unit_text_of(s) -> str:
    files = serving_files("p", s, python=PY, root=Path("/nonexistent"))
    return files.files[0][1]


def keys_of(text: str) -> list[str]:
    return [line.split("=", 1)[0] for line in text.splitlines() if line and not line.startswith(("#", "["))]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=1))
def test_no_value_adds_a_directive(model: str) -> None:
    """Whatever the model name and extra argument say, the unit has the same directives, one ExecStart
    line, every % and $ of the value doubled, and its quotes balanced. (A model starting with / is a
    local directory: one under /root or /home adds a bind, see test_a_venv_under_root_is_bound...)"""
    if model.startswith("/"):
        model = "." + model
    text = unit_text_of(load_vllm(model))
    assert keys_of(text) == keys_of(unit_text_of(load_vllm("plain")))
    (line,) = directive(text, "ExecStart")
    rest = line.split(" serve ", 1)[1]
    assert "%" not in rest.replace("%%", "")
    assert "$" not in rest.replace("$$", "")
    assert len(re.findall(r'(?<!\\)"', rest.replace("\\\\", ""))) % 2 == 0


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "a\tb", "a\x85b", "a\u2028b"])
def test_newlines_never_reach_a_unit(bad: str) -> None:
    with pytest.raises(RenderError):
        unit_text_of(load_vllm(bad))


# -- plan -----------------------------------------------------------------------------------------------


def host(**kw) -> HostState:
    from provision.plan import MANAGED_FILES, MANAGED_UNITS

    base = {
        "files": {p: FileState(None) for p in MANAGED_FILES},
        "units": {u: UnitState(u, None, False) for u in MANAGED_UNITS},
        "python": PY,
        "root": "/nonexistent",
    }
    base.update(kw)
    return HostState(**base)


def with_ollama(**kw) -> HostState:
    """:func:`host` where Ollama is installed (its installer's unit): an Ollama profile plans only there."""
    unit = UnitState("ollama.service", "/etc/systemd/system/ollama.service", True)
    return host(units={**host().units, "ollama.service": unit}, **kw)


def test_plan_shows_the_server_files_and_unit() -> None:
    plan = make_plan(*gathered(load_snapshot("rtx4090-laptop"), builtin("rtx4090-laptop"), host()))
    c = {(ch.subject, ch.setting): ch for ch in plan.changes}
    unit = "/etc/systemd/system/gpuprov-vllm.service"
    assert c[unit, "content"].action == "change" and "+ExecStart=" in c[unit, "content"].diff
    assert c["/etc/sysusers.d/gpuprov-vllm.conf", "content"].action == "change"
    assert c["gpuprov-vllm.service", "enabled"].desired is True
    # the plan's root is not / here: the profile's stack is made only at its real path, so the server's
    # program is missing (with root /, the stack makes it earlier in the same apply: tests/unit/test_stack_plan.py)
    assert any("/opt/gpuprov/envs/vllm/bin/vllm is not on this host" in n for n in plan.desired.notes)
    assert plan.desired.stack == {} and any("applied with / as the root" in n for n in plan.desired.notes)
    assert plan.desired.serving["key_file"] == "/etc/gpuprov/serving/vllm.env"
    assert plan.desired.serving["start"] is False  # systemd is not running on this test host
    # the key never appears in a plan
    assert "VLLM_API_KEY=" not in str(plan.to_dict())


def test_plan_is_ok_when_the_files_are_already_there() -> None:
    snap, prof = load_snapshot("rtx4090"), builtin("rtx4090")
    first = make_plan(*gathered(snap, prof, with_ollama()))
    files = {f.path: FileState(f.content, f.mode) for f in first.desired.serving_files}
    again = make_plan(*gathered(snap, prof, with_ollama(files={**host().files, **files})))
    assert all(ch.action == "ok" for ch in again.changes if ch.subject in files)


def test_exposed_without_a_key_is_warned(tmp_path: Path) -> None:
    prof = user_profile(tmp_path, "serving:\n  host: 0.0.0.0\n  llama_cpp: {model: /m.gguf, server: /s}\n")
    plan = make_plan(*gathered(load_snapshot("rtx4090"), prof, host()))
    warning = "WARNING: llama_cpp listens on 0.0.0.0:8080 without an API key"
    assert any(n.startswith(warning) for n in plan.desired.notes)
    keyed = user_profile(tmp_path, "extends: mine\nserving: {api_key: true}\n", "keyed")
    assert not any("WARNING" in n for n in make_plan(*gathered(load_snapshot("rtx4090"), keyed, host())).desired.notes)


def test_an_exposed_ollama_gets_a_remedy_the_schema_accepts(tmp_path: Path) -> None:
    """Ollama has no API key (the schema refuses serving.api_key for it): the plan says what doctor says."""
    from provision.serving.units import exposure_remedy

    prof = user_profile(tmp_path, "serving:\n  host: 0.0.0.0\n  ollama: {}\n")
    notes = make_plan(*gathered(load_snapshot("rtx4090"), prof, with_ollama())).desired.notes
    (warning,) = [n for n in notes if "WARNING" in n]
    assert warning.startswith("WARNING: ollama listens on 0.0.0.0:11434 without an API key")
    assert "api_key: true" not in warning and exposure_remedy("ollama") in warning
    assert "put a proxy with authentication in front" in warning
    with pytest.raises(ProfileError, match="Ollama has no API key"):  # what the old remedy told users to do
        user_profile(tmp_path, "extends: mine\nserving: {api_key: true}\n", "keyed")


def test_ollama_paths_that_may_not_exist_do_not_fail_the_start(tmp_path: Path) -> None:
    """ReadWritePaths= on a missing directory fails the unit with 226/NAMESPACE; '-' skips it instead."""
    prof = user_profile(tmp_path, "serving:\n  ollama: {models_dir: /srv/ollama}\n")
    text = unit_text(prof)[OLLAMA_DROPIN]
    assert directive(text, "ReadWritePaths") == ["-/usr/share/ollama", "-/srv/ollama"]
    home = user_profile(tmp_path, "serving:\n  ollama: {models_dir: /home/me/models}\n", "home")
    assert directive(unit_text(home)[OLLAMA_DROPIN], "BindPaths") == ["-/home/me/models"]
    units = {**host().units, "ollama.service": UnitState("ollama.service", "/etc/systemd/system/ollama.service", True)}
    notes = make_plan(*gathered(load_snapshot("rtx4090"), prof, host(root=str(tmp_path), units=units))).desired.notes
    assert any(n.startswith("/srv/ollama does not exist") for n in notes)
    assert any(n.startswith("/usr/share/ollama does not exist") for n in notes)
    (tmp_path / "srv/ollama").mkdir(parents=True)
    (tmp_path / "usr/share/ollama").mkdir(parents=True)
    notes = make_plan(*gathered(load_snapshot("rtx4090"), prof, host(root=str(tmp_path), units=units))).desired.notes
    assert not any("does not exist" in n for n in notes)
    # the binary without Ollama's unit (installed by hand): one note says the drop-in waits for the unit, not
    # one per directory its installer makes
    bare = tmp_path / "bare"
    (bare / "usr/bin").mkdir(parents=True)
    (bare / "usr/bin/ollama").write_text("#!/bin/sh\n")
    notes = make_plan(*gathered(load_snapshot("rtx4090"), prof, host(root=str(bare)))).desired.notes
    assert any(n.startswith("ollama.service is not installed") for n in notes)
    assert not any(n.startswith("/usr/share/ollama") for n in notes)


@pytest.mark.parametrize("image", [False, True])
def test_ollama_not_installed_at_all_is_refused(tmp_path: Path, image: bool) -> None:
    """No ollama binary and no ollama.service: no drop-in for a service that does not exist (issue 16)."""
    from provision.plantypes import PlanError

    prof = user_profile(tmp_path, "serving:\n  ollama: {models_dir: /srv/ollama}\n")
    tree = tmp_path / "tree"
    (tree / "usr/share/ollama").mkdir(parents=True)  # a leftover directory is not Ollama
    (tree / "usr/lib/ollama").mkdir(parents=True)
    (tree / "usr/local/bin/ollama").mkdir(parents=True)  # nor is a directory where its binary would be
    where = f"in the image tree {tree}" if image else "on this host"
    line = (
        f"profile mine: serving: Ollama is not installed {where} (no ollama binary, no ollama.service): install it "
        "with its installer (https://ollama.com/download), then run apply again"
    )
    with pytest.raises(PlanError) as info:
        make_plan(*gathered(load_snapshot("rtx4090"), prof, host(root=str(tree), image=image)))
    assert str(info.value) == line and info.value.exit_code == 3
    # a snapshot of another host (plan --from) cannot tell what is installed there: it plans
    make_plan(*gathered(load_snapshot("rtx4090"), prof, host(root=str(tree), known=False)))
    # each of the installer's places for the binary, or the unit alone (in the tree or in the host's units)
    for binary in ("usr/local/bin/ollama", "usr/bin/ollama", "bin/ollama"):
        place = tmp_path / binary.replace("/", "-")
        (place / binary).parent.mkdir(parents=True)
        (place / binary).write_bytes(b"\x7fELF")
        make_plan(*gathered(load_snapshot("rtx4090"), prof, host(root=str(place), image=image)))
    make_plan(*gathered(load_snapshot("rtx4090"), prof, with_ollama(root=str(tree), image=image)))


_DASHED = st.one_of(
    st.text(max_size=8),
    st.builds(lambda a: "-" + a, st.text(alphabet="-_=hostpr0.:", max_size=10)),
    st.builds(lambda a: "--" + a, st.text(alphabet="-_=hostpr0.:ayki", max_size=14)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_DASHED, max_size=4))
def test_extra_args_the_schema_accepts_never_move_the_server(args: list[str]) -> None:
    """Where an argparse server (vLLM, llama_cpp.server: abbreviations allowed) listens, read back from the
    unit's command line, is the profile's host and port whatever extra_args the schema lets through."""
    import argparse

    from provision.profiles.schema import _Where
    from provision.serving.section import _args
    from provision.serving.settings import ServingSection

    try:
        extra = _args(args, _Where("p.yaml")["serving"]["vllm"]["extra_args"], "vllm")
    except ProfileError:
        return
    argv = server_argv(ServingSection("vllm", VllmSettings(model="m", venv="/v", extra_args=extra), port=8000))
    parser = argparse.ArgumentParser(add_help=False, exit_on_error=False)
    parser.add_argument("model")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--api-key")
    try:
        ns, _ = parser.parse_known_args(argv[2:])
    except (argparse.ArgumentError, SystemExit):
        return  # a command line the server refuses: it does not start at all
    assert (ns.host, ns.port, ns.api_key) == ("127.0.0.1", 8000, None)


def test_a_gpu_the_host_lacks_is_refused(tmp_path: Path) -> None:
    from provision.plantypes import PlanError

    prof = user_profile(tmp_path, "serving:\n  gpus: [1]\n  ollama: {}\n")
    with pytest.raises(PlanError, match=r"serving\.gpus names GPU 1, but this host has GPU 0"):
        make_plan(*gathered(load_snapshot("rtx4090"), prof, with_ollama()))


def test_plan_warns_when_the_model_does_not_fit(tmp_path: Path) -> None:
    """gpuprov fit's pure function on the profile's GGUF: a 70B-shaped model on a 24 GB GPU."""
    from tests.unit.test_fit_gguf import Arch, write_gguf

    big = Arch("llama", n_layer=80, n_embd=8192, n_head=64, n_head_kv=8, n_ff=28672, n_vocab=32000, context=8192)
    (tmp_path / "srv").mkdir()
    write_gguf(tmp_path / "srv/big.gguf", big, sparse=True)
    prof = user_profile(tmp_path, "serving:\n  llama_cpp: {model: /srv/big.gguf, server: /s, n_gpu_layers: 999}\n")
    plan = make_plan(*gathered(load_snapshot("rtx4090"), prof, host(root=str(tmp_path))))
    assert any(n.startswith("WARNING: serving model /srv/big.gguf does not fit") for n in plan.desired.notes)
    small = Arch("llama", n_layer=4, n_embd=256, n_head=8, n_head_kv=2, n_ff=512, n_vocab=512, context=8192)
    write_gguf(tmp_path / "srv/small.gguf", small)
    prof = user_profile(tmp_path, "serving:\n  llama_cpp: {model: /srv/small.gguf, server: /s}\n", "small")
    notes = make_plan(*gathered(load_snapshot("rtx4090"), prof, host(root=str(tmp_path)))).desired.notes
    assert not any("fit" in n for n in notes)


def test_fit_check_reads_ctx_size_as_the_total_over_the_slots(tmp_path: Path) -> None:
    """llama-server --ctx-size 65536 --parallel 4 gives each slot 16384 tokens: 8 GiB of KV here, which fits
    a 24 GB GPU; read as 65536 per slot it would be 32 GiB and a false warning."""
    from tests.unit.test_fit_gguf import Arch, write_gguf

    arch = Arch("llama", n_layer=32, n_embd=2048, n_head=16, n_head_kv=8, n_ff=5632, n_vocab=32000, context=65536)
    (tmp_path / "srv").mkdir()
    write_gguf(tmp_path / "srv/m.gguf", arch, sparse=True)
    body = "serving:\n  llama_cpp: {model: /srv/m.gguf, server: /s, n_gpu_layers: 999, ctx_size: 65536, parallel: 4}\n"
    prof = user_profile(tmp_path, body)
    notes = make_plan(*gathered(load_snapshot("rtx4090"), prof, host(root=str(tmp_path)))).desired.notes
    assert not any("does not fit" in n for n in notes), notes
    # the same total for one slot is 32 GiB of KV: that does not fit
    body = "serving:\n  llama_cpp: {model: /srv/m.gguf, server: /s, n_gpu_layers: 999, ctx_size: 262144, parallel: 4}\n"
    prof = user_profile(tmp_path, body, "big")
    notes = make_plan(*gathered(load_snapshot("rtx4090"), prof, host(root=str(tmp_path)))).desired.notes
    assert any(n.startswith("WARNING: serving model /srv/m.gguf does not fit") for n in notes), notes


def test_plan_diff_and_render_show_the_same_files() -> None:
    """plan --diff and gpuprov render come from one renderer: the same bytes for every serving file."""
    snap, prof = load_snapshot("rtx4090-laptop"), builtin("rtx4090-laptop")
    plan = make_plan(*gathered(snap, prof, host()))
    shown = {f.path: f.content for f in rendered_files(prof, python=PY, snapshot=snap, root=Path("/nonexistent")).files}
    for f in plan.desired.serving_files:
        assert shown[f.path] == f.content
        diff = next(c.diff for c in plan.changes if c.subject == f.path and c.setting == "content")
        assert [line[1:] for line in diff.splitlines()[3:]] == f.content.splitlines()
