"""Serving settings across profiles and files: a child profile merging the engine block with its
parent's, server config files refused in extra_args, and paths the hardened units' sandbox hides."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.profiles import ProfileError
from provision.profiles.loader import ProfileSet, builtin_dir
from provision.serving.commandline import server_argv
from provision.serving.settings import LlamaCppSettings, OllamaSettings, VllmSettings


def user_profile(tmp_path: Path, text: str, name: str = "mine"):
    (tmp_path / f"{name}.yaml").write_text(text)
    return ProfileSet([builtin_dir(), tmp_path]).load(name)


# -- a child keeping the engine merges its block with the parent's ---------------------------------------


def test_a_child_setting_only_the_vllm_model_keeps_the_parents_engine_settings(tmp_path: Path) -> None:
    """rtx4090-laptop serves vLLM from /opt/gpuprov/envs/vllm with tuned options: a child changing the model alone
    used to fail with "set exactly one of venv or executable" (its block replaced the parent's)."""
    prof = user_profile(tmp_path, "extends: rtx4090-laptop\nserving:\n  vllm: {model: Qwen/Qwen3-8B}\n")
    s = prof.sections["serving"]
    assert isinstance(s.settings, VllmSettings)
    assert s.settings.model == "Qwen/Qwen3-8B"
    assert s.settings.venv == "/opt/gpuprov/envs/vllm"
    assert s.settings.gpu_memory_utilization == 0.85 and s.settings.max_model_len == 8192
    assert s.settings.attention_backend == "FLASHINFER"
    assert s.port == 8000 and s.api_key is True and s.gpus == (0,)


def test_a_child_can_drop_one_inherited_engine_setting_with_null(tmp_path: Path) -> None:
    text = "extends: rtx4090-laptop\nserving:\n  vllm: {model: Qwen/Qwen3-8B, quantization: null}\n"
    st_ = user_profile(tmp_path, text).sections["serving"].settings
    assert st_.quantization is None and st_.max_model_len == 8192


def test_choosing_the_other_program_replaces_the_parents_choice(tmp_path: Path) -> None:
    """venv and executable (vLLM), server and venv (llama.cpp) are one choice: the child's wins."""
    vllm = user_profile(tmp_path, "extends: rtx4090-laptop\nserving:\n  vllm: {executable: /usr/local/bin/vllm}\n")
    assert vllm.sections["serving"].settings.executable == "/usr/local/bin/vllm"
    assert vllm.sections["serving"].settings.venv is None
    assert vllm.sections["serving"].settings.model == "Qwen/Qwen3-4B-Instruct-2507-FP8"

    user_profile(
        tmp_path,
        "serving:\n  llama_cpp: {model: /srv/m.gguf, server: /usr/bin/llama-server, parallel: 4, ctx_size: 8192}\n",
        "base",
    )
    venv = user_profile(tmp_path, "extends: base\nserving:\n  llama_cpp: {venv: /opt/llama}\n", "pyserver")
    st_ = venv.sections["serving"].settings
    assert isinstance(st_, LlamaCppSettings)
    # llama_cpp.server has no slots: the parent's llama-server-only parallel goes with its server
    assert (st_.venv, st_.server, st_.parallel, st_.ctx_size, st_.model) == (
        "/opt/llama",
        None,
        None,
        8192,
        "/srv/m.gguf",
    )
    more = user_profile(tmp_path, "extends: base\nserving:\n  llama_cpp: {parallel: 8}\n", "more")
    assert more.sections["serving"].settings.parallel == 8
    assert more.sections["serving"].settings.server == "/usr/bin/llama-server"


def test_a_child_switching_engine_gets_its_own_block_only(tmp_path: Path) -> None:
    """rtx4090-laptop's vLLM block does not leak into a llama.cpp child, nor its port."""
    child = "extends: rtx4090-laptop\nserving:\n  llama_cpp: {model: /srv/m.gguf, server: /usr/bin/llama-server}\n"
    s = user_profile(tmp_path, child).sections["serving"]
    assert s.engine == "llama_cpp" and s.port == 8080
    assert s.settings == LlamaCppSettings(model="/srv/m.gguf", server="/usr/bin/llama-server")
    # and back: a grandchild serving vLLM again starts from its own block, not the grandparent's
    user_profile(tmp_path, "extends: rtx4090-laptop\nserving:\n  llama_cpp: {model: /m.gguf, server: /s}\n", "mid")
    with pytest.raises(ProfileError, match="set exactly one of venv or executable"):
        user_profile(tmp_path, "extends: mid\nserving:\n  vllm: {model: m}\n", "back")


def test_the_ollama_block_merges_and_a_parents_bare_ollama_stays_its_choice(tmp_path: Path) -> None:
    s = user_profile(tmp_path, "extends: rtx4090\nserving:\n  ollama: {num_parallel: 2}\n").sections["serving"]
    assert isinstance(s.settings, OllamaSettings)
    assert (s.settings.num_parallel, s.settings.max_loaded_models, s.settings.flash_attention) == (2, 2, True)
    # `ollama:` with no settings is a choice of engine; a child not touching it keeps it (and its port)
    user_profile(tmp_path, "serving:\n  port: 11500\n  ollama:\n", "bare")
    kept = user_profile(tmp_path, "extends: bare\nserving: {gpus: [0]}\n", "kept").sections["serving"]
    assert kept.engine == "ollama" and kept.port == 11500
    tuned = user_profile(tmp_path, "extends: bare\nserving:\n  ollama: {num_parallel: 3}\n", "tuned")
    assert tuned.sections["serving"].port == 11500


def test_three_generations_merge_in_order(tmp_path: Path) -> None:
    user_profile(tmp_path, "extends: rtx4090-laptop\nserving:\n  vllm: {max_model_len: 4096}\n", "mid")
    s = user_profile(tmp_path, "extends: mid\nserving:\n  vllm: {model: org/other, max_num_seqs: 8}\n").sections[
        "serving"
    ]
    assert (s.settings.model, s.settings.max_model_len, s.settings.max_num_seqs, s.settings.venv) == (
        "org/other",
        4096,
        8,
        "/opt/gpuprov/envs/vllm",
    )


# -- server config files in extra_args ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("engine", "args"),
    [
        ("vllm", ["--config", "/etc/vllm.yaml"]),
        ("vllm", ["--config=/etc/vllm.yaml"]),
        ("vllm", ["--conf", "/etc/vllm.yaml"]),  # argparse takes an unambiguous abbreviation
        ("vllm", ["--max-num-batched-tokens", "2048", "--config", "/etc/vllm.yaml"]),
        ("llama_cpp", ["--config_file", "/etc/llama.json"]),
        ("llama_cpp", ["--config-file=/etc/llama.json"]),
        ("llama_cpp", ["--config", "/etc/llama.json"]),
    ],
)
def test_a_server_config_file_in_extra_args_is_refused(tmp_path: Path, engine: str, args: list[str]) -> None:
    """`vllm serve --config FILE` (and llama_cpp.server's --config_file) read host, port and api-key from
    the file, out of sight of the profile keys that own them."""
    block = "{model: m, venv: /opt/v" if engine == "vllm" else "{model: /m.gguf, venv: /opt/v"
    with pytest.raises(ProfileError) as exc:
        user_profile(tmp_path, f"serving:\n  {engine}: {block}, extra_args: {args!r}}}\n")
    message = exc.value.message
    assert str(tmp_path / "mine.yaml") in message and f"key serving.{engine}.extra_args" in message
    assert "config file can set host, port and API key" in message
    assert "serving.host, serving.port, serving.api_key" in message and "\n" not in message


@pytest.mark.parametrize(
    "arg", ["--config-format", "--config-format=auto", "--compilation-config", "config", "/etc/config", "--c"]
)
def test_options_that_only_look_like_config_are_passed(tmp_path: Path, arg: str) -> None:
    s = user_profile(tmp_path, f"serving:\n  vllm: {{model: m, venv: /opt/v, extra_args: [{arg!r}]}}\n")
    assert server_argv(s.sections["serving"])[-1] == arg


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="-_=cCofnigl", min_size=1, max_size=14))
def test_every_spelling_argparse_would_read_as_config_is_refused(arg: str) -> None:
    """The rule against argparse's own: a long option whose name (before '=', '_' read as '-') is an
    abbreviation of --config is refused; everything else goes through to the server."""
    import tempfile

    name = arg[2:].split("=", 1)[0].replace("_", "-") if arg.startswith("--") else ""
    reads_config = len(name) >= 2 and "config".startswith(name)
    with tempfile.TemporaryDirectory() as tmp:
        text = f"serving:\n  vllm: {{model: m, venv: /opt/v, extra_args: [{arg!r}]}}\n"
        try:
            user_profile(Path(tmp), text)
        except ProfileError as exc:
            assert reads_config or "instead of passing it in extra_args" in exc.message, exc.message
        else:
            assert not reads_config


# -- paths the hardened units' sandbox hides (PrivateTmp=yes: /tmp and /var/tmp are the unit's own) ------


def _plan(
    tmp_path: Path,
    text: str,
    *,
    python: str = "/opt/gpuprov/bin/python",
    root: str | None = None,
    snapshot: str = "rtx4090",
):
    from provision.plan import make_plan
    from provision.plantypes import HostState
    from tests.conftest import gathered, load_snapshot

    prof = user_profile(tmp_path, text)
    host = HostState(known=False, python=python, root=root or str(tmp_path))
    return make_plan(*gathered(load_snapshot(snapshot), prof, host))


@pytest.mark.parametrize(
    ("block", "hidden"),
    [
        ("llama_cpp: {model: /srv/m.gguf, venv: /tmp/envs/llama}", "/tmp/envs/llama"),
        ("llama_cpp: {model: /var/tmp/models/m.gguf, server: /usr/local/bin/llama-server}", "/var/tmp/models/m.gguf"),
        ("llama_cpp: {model: /srv/m.gguf, server: /tmp/llama.cpp/build/bin/llama-server}", "/tmp/llama.cpp/build/bin"),
        ("vllm: {model: org/m, venv: /var/tmp/vllm}", "/var/tmp/vllm"),
        ("vllm: {model: /tmp/models/m, executable: /opt/vllm/bin/vllm}", "/tmp/models/m"),
        ("ollama: {models_dir: /tmp/ollama-models}", "/tmp/ollama-models"),
    ],
)
def test_a_server_path_under_tmp_is_a_warning_in_plan_and_a_refusal_for_apply(
    tmp_path: Path, block: str, hidden: str
) -> None:
    """The serving units have PrivateTmp=yes: the server there would not start (or see its model)."""
    plan = _plan(tmp_path, f"match: {{gpu_names: ['*']}}\nserving:\n  {block}\n")
    (refusal,) = plan.desired.refusals
    unit = plan.desired.serving["unit"]
    assert refusal.startswith(f"{unit} cannot see serving.") and hidden in refusal
    assert "PrivateTmp=yes" in refusal and "\n" not in refusal
    assert f"WARNING: {refusal} (apply refuses this)" in plan.desired.notes
    assert plan.to_dict()["desired"]["refusals"] == [refusal]


def test_server_paths_elsewhere_and_in_home_directories_are_not_refused(tmp_path: Path) -> None:
    """/root and /home are hidden by ProtectHome= too, but the unit binds what it needs back in."""
    plan = _plan(tmp_path, "serving:\n  llama_cpp: {model: /root/m.gguf, venv: /home/me/llama}\n")
    assert plan.desired.refusals == []
    unit = next(f.content for f in plan.desired.serving_files if f.path.endswith(".service"))
    assert "ProtectHome=tmpfs" in unit and "BindReadOnlyPaths=/home/me/llama" in unit


GPU_AND_SERVER = (
    "match: {gpu_names: ['*']}\ngpu: {power_limit_w: 250}\nserving:\n  llama_cpp: {model: /m.gguf, venv: /opt/l}\n"
)


@pytest.mark.parametrize("python", ["/tmp/clone/.venv/bin/python", "/var/tmp/gpuprov/bin/python"])
def test_gpuprov_itself_under_tmp_is_refused_for_the_boot_unit_and_the_servers(tmp_path: Path, python: str) -> None:
    """The boot unit and the servers' ExecStartPre= run gpuprov's interpreter: from a clone under /tmp
    neither can start (the nspawn tests failed that way)."""
    text = GPU_AND_SERVER
    plan = _plan(tmp_path, text, python=python, root="/")
    prefix = python.removesuffix("/bin/python")
    assert [r.split(" cannot see ")[0] for r in plan.desired.refusals] == [
        "gpuprov-gpu-settings.service",
        "gpuprov-llama-cpp.service",
    ]
    for refusal in plan.desired.refusals:
        assert f"gpuprov's interpreter or package {prefix}:" in refusal
        assert "/opt/gpuprov" in refusal  # where to put it instead


def test_an_image_tree_is_not_refused_for_this_machines_interpreter(tmp_path: Path) -> None:
    """apply --root IMG: the units run the image's gpuprov, wherever this process's lives."""
    text = GPU_AND_SERVER
    assert _plan(tmp_path, text, python="/tmp/clone/.venv/bin/python").desired.refusals == []


def test_a_link_into_tmp_is_refused_with_where_it_points(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os.path

    real = os.path.realpath
    monkeypatch.setattr(os.path, "realpath", lambda p: "/tmp/build/llama" if p == "/opt/llama" else real(p))
    from provision.serving.sandbox import read_sandbox_facts

    here = read_sandbox_facts([], ["/opt/llama", "/srv/m.gguf"], Path("/"))
    assert here.private_tmp_hidden(["/opt/llama", "/srv/m.gguf"]) == ["/opt/llama (a link into /tmp/build/llama)"]
    image = read_sandbox_facts([], ["/opt/llama"], tmp_path)
    assert image.private_tmp_hidden(["/opt/llama"]) == []  # an image's links point into the image


@given(
    st.lists(st.sampled_from(["/tmp", "/var/tmp", "/tmpx", "/var/tmpfoo", "/opt", "/home/u", "/"]), min_size=1)
    .map(lambda parts: "/".join(p.strip("/") for p in parts))
    .map(lambda p: "/" + p.lstrip("/"))
)
def test_hidden_means_under_tmp_or_var_tmp_by_whole_components(path: str) -> None:
    from provision.serving.sandbox import read_sandbox_facts

    under = path in ("/tmp", "/var/tmp") or path.startswith(("/tmp/", "/var/tmp/"))
    assert bool(read_sandbox_facts([], [path], Path("/nonexistent-root")).private_tmp_hidden([path])) == under


def test_the_boot_unit_binds_a_home_interpreter_and_hides_home_otherwise(tmp_path: Path) -> None:
    """Root with CAP_SYS_ADMIN alone cannot enter /home/USER (0700): the interpreter is bound in, as for
    the servers, and an interpreter elsewhere leaves /home, /root and /run/user hidden."""
    text = "match: {gpu_names: ['*']}\ngpu: {power_limit_w: 250}\n"
    venv = tmp_path / "home/me/.venv"
    venv.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /root/.pyenv/versions/3.11.7/bin\n")

    def boot_unit(python: str) -> str:
        plan = _plan(tmp_path, text, python=python)
        return next(f.content for f in plan.desired.files if f.path.endswith("gpuprov-gpu-settings.service"))

    home = boot_unit("/home/me/.venv/bin/python")
    assert "ProtectHome=tmpfs" in home
    assert [line for line in home.splitlines() if line.startswith("BindReadOnlyPaths=")] == [
        "BindReadOnlyPaths=/home/me/.venv",
        "BindReadOnlyPaths=/root/.pyenv/versions/3.11.7",
    ]
    opt = boot_unit("/opt/gpuprov/bin/python")
    assert "ProtectHome=yes" in opt and "BindReadOnlyPaths=" not in opt


def test_units_run_by_this_interpreter_see_the_package_it_imports(tmp_path: Path) -> None:
    """An editable install (a checkout under /root) imports provision from outside its virtualenv: the
    units' sandbox must show that directory too, or `python -m provision` finds no module."""
    import sys

    import provision
    from provision.serving.sandbox import read_sandbox_facts

    package = str(Path(provision.__file__).parent)
    facts = read_sandbox_facts([sys.executable, "/opt/other/bin/python"], [], Path("/"))
    assert package in facts.gpuprov_paths(sys.executable)
    assert package not in facts.gpuprov_paths("/opt/other/bin/python")


def test_apply_refuses_with_one_line_and_plan_warns(tmp_path: Path) -> None:
    """The commands themselves: apply exits 3 with the reason on one line and writes nothing; plan shows
    the same reason as a warning and exits 0."""
    import os
    import shutil
    import subprocess
    import sys

    from tests.conftest import SNAPSHOTS

    root = tmp_path / "img"
    profiles = root / "etc/gpuprov/profiles"
    profiles.mkdir(parents=True)
    (profiles / "tmpvenv.yaml").write_text(
        "match: {gpu_names: ['*']}\nserving:\n  llama_cpp: {model: /srv/m.gguf, venv: /tmp/envs/llama}\n"
    )
    gpu = tmp_path / "gpu.json"
    shutil.copy(SNAPSHOTS / "rtx4090.constructed.json", gpu)
    env = {
        **os.environ,
        "GPUPROV_NVML_REPLAY": str(gpu),
        "GPUPROV_STATE_DIR": str(tmp_path / "state"),
        "XDG_CONFIG_HOME": str(tmp_path / "config"),
        "COLUMNS": "300",
    }
    before = sorted(p for p in tmp_path.rglob("*"))

    def gpuprov(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "provision", *args, "--root", str(root)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )

    for args in (("apply", "tmpvenv"), ("apply", "tmpvenv", "--check")):
        proc = gpuprov(*args)
        assert proc.returncode == 3, proc.stdout + proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert "gpuprov-llama-cpp.service cannot see serving.llama_cpp's /tmp/envs/llama" in line
        assert "PrivateTmp=yes" in line and "Traceback" not in proc.stderr
        assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written, no state
    plan = gpuprov("plan", "tmpvenv")
    assert plan.returncode == 0, plan.stderr
    assert "WARNING: gpuprov-llama-cpp.service cannot see serving.llama_cpp's /tmp/envs/llama" in " ".join(
        plan.stdout.split()
    )
