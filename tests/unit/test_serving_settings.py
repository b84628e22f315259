"""Serving settings across profiles and files: a child profile merging the engine block with its
parent's, server config files refused in extra_args, and paths the hardened units' sandbox hides."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provision.profiles import ProfileError, ProfileSet
from provision.profiles.loader import builtin_dir
from provision.serving import LlamaCppSettings, OllamaSettings, VllmSettings, server_argv


def user_profile(tmp_path: Path, text: str, name: str = "mine"):
    (tmp_path / f"{name}.yaml").write_text(text)
    return ProfileSet([builtin_dir(), tmp_path]).load(name)


# -- a child keeping the engine merges its block with the parent's ---------------------------------------


def test_a_child_setting_only_the_vllm_model_keeps_the_parents_engine_settings(tmp_path: Path) -> None:
    """rtx4090-laptop serves vLLM from /opt/vllm with tuned options: a child changing the model alone
    used to fail with "set exactly one of venv or executable" (its block replaced the parent's)."""
    prof = user_profile(tmp_path, "extends: rtx4090-laptop\nserving:\n  vllm: {model: Qwen/Qwen3-8B}\n")
    s = prof.sections["serving"]
    assert isinstance(s.settings, VllmSettings)
    assert s.settings.model == "Qwen/Qwen3-8B"
    assert s.settings.venv == "/opt/vllm"
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

    user_profile(tmp_path, "serving:\n  llama_cpp: {model: /srv/m.gguf, server: /usr/bin/llama-server, parallel: 4, "
                           "ctx_size: 8192}\n", "base")  # fmt: skip
    venv = user_profile(tmp_path, "extends: base\nserving:\n  llama_cpp: {venv: /opt/llama}\n", "pyserver")
    st_ = venv.sections["serving"].settings
    assert isinstance(st_, LlamaCppSettings)
    # llama_cpp.server has no slots: the parent's llama-server-only parallel goes with its server
    assert (st_.venv, st_.server, st_.parallel, st_.ctx_size, st_.model) == ("/opt/llama", None, None, 8192,
                                                                            "/srv/m.gguf")  # fmt: skip
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
        "org/other", 4096, 8, "/opt/vllm",
    )  # fmt: skip


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


@pytest.mark.parametrize("arg", ["--config-format", "--config-format=auto", "--compilation-config", "config",
                                 "/etc/config", "--c"])  # fmt: skip
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
