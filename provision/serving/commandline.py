"""The servers' command lines, as the units run them (every value reaches ``ExecStart=`` through the
``systemd_quote`` filter)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from packaging.version import Version

from provision.serving.settings import (
    GGML_TYPE_IDS,
    WAIT_GPU_S,
    LlamaCppSettings,
    ServingError,
    ServingSection,
    VllmSettings,
    argv_number,
)
from provision.serving.vllm_versions import vllm_args

if TYPE_CHECKING:
    pass


# -- the command lines -----------------------------------------------------------------------------------


def server_argv(s: ServingSection, *, vllm_version: Version | None = None) -> list[str]:
    """The server's command line, one list item per argument (quoted for systemd by the template).
    ``vllm_version``: the installed vLLM, whose options are written (None: current releases')."""
    st = s.settings
    if isinstance(st, VllmSettings):
        exe = st.executable or f"{st.venv}/bin/vllm"
        argv = [exe, "serve", st.model, "--host", s.host, "--port", str(s.port)]
        return argv + vllm_args(st, vllm_version).options + list(st.extra_args)
    if isinstance(st, LlamaCppSettings):
        if st.server is not None:
            argv = [st.server, "--model", st.model, "--host", s.host, "--port", str(s.port)]
            pairs: list[tuple[str, Any]] = [
                ("--n-gpu-layers", st.n_gpu_layers),
                ("--ctx-size", st.ctx_size),
                ("--parallel", st.parallel),
                ("--tensor-split", ",".join(argv_number(v) for v in st.tensor_split) if st.tensor_split else None),
                ("--flash-attn", None if st.flash_attention is None else ("on" if st.flash_attention else "off")),
                ("--cache-type-k", st.cache_type_k),
                ("--cache-type-v", st.cache_type_v),
            ]
            for flag, value in pairs:
                if value is not None:
                    argv += [flag, str(value)]
            if st.no_mmap:
                argv.append("--no-mmap")
            return [*argv, "--offline", *st.extra_args]
        argv = [f"{st.venv}/bin/python", "-m", "llama_cpp.server", "--model", st.model,
                "--host", s.host, "--port", str(s.port)]  # fmt: skip
        pairs = [
            ("--n_gpu_layers", st.n_gpu_layers),
            ("--n_ctx", st.ctx_size),
            ("--flash_attn", None if st.flash_attention is None else str(st.flash_attention)),
            ("--type_k", None if st.cache_type_k is None else GGML_TYPE_IDS[st.cache_type_k]),
            ("--type_v", None if st.cache_type_v is None else GGML_TYPE_IDS[st.cache_type_v]),
            ("--use_mmap", "False" if st.no_mmap else None),
        ]
        for flag, value in pairs:
            if value is not None:
                argv += [flag, str(value)]
        if st.tensor_split:  # a list option (argparse nargs="*"): one argument per GPU
            argv += ["--tensor_split", *(argv_number(v) for v in st.tensor_split)]
        return argv + list(st.extra_args)
    raise ServingError(f"{s.engine}: gpuprov does not write this server's command line (Ollama's unit has its own)")


def wait_gpu_argv(python: str, s: ServingSection) -> list[str]:
    argv = [python, "-m", "provision", "wait-gpu", "--timeout-s", str(WAIT_GPU_S)]
    if s.gpus:
        argv += ["--gpus", ",".join(str(g) for g in s.gpus)]
    return argv
