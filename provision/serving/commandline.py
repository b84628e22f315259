"""The servers' command lines, as the units run them: the engine's flags from :mod:`provision.engineflags`
(every value reaches ``ExecStart=`` through the ``systemd_quote`` filter)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from packaging.version import Version

from provision import engineflags
from provision.serving.settings import WAIT_GPU_S, LlamaCppSettings, ServingError, ServingSection, VllmSettings
from provision.serving.vllm_versions import vllm_args

if TYPE_CHECKING:
    pass


# -- the command lines -----------------------------------------------------------------------------------


def server_argv(s: ServingSection, *, vllm_version: Version | None = None) -> list[str]:
    """The server's command line, one list item per argument (quoted for systemd by the template), in the
    engine's spelling (:mod:`provision.engineflags`). ``vllm_version``: the installed vLLM, whose options
    are written (None: current releases')."""
    st = s.settings
    if isinstance(st, VllmSettings):
        exe = st.executable or f"{st.venv}/bin/vllm"
        return engineflags.vllm_argv(exe, st.model, s.host, s.port, vllm_args(st, vllm_version).options, st.extra_args)
    if isinstance(st, LlamaCppSettings):
        if st.server is not None:
            return engineflags.llama_server_argv(st, s.host, s.port)
        return engineflags.llama_cpp_python_argv(st, s.host, s.port)
    raise ServingError(f"{s.engine}: gpuprov does not write this server's command line (Ollama's unit has its own)")


def wait_gpu_argv(python: str, s: ServingSection) -> list[str]:
    argv = [python, "-m", "provision", "wait-gpu", "--timeout-s", str(WAIT_GPU_S)]
    if s.gpus:
        argv += ["--gpus", ",".join(str(g) for g in s.gpus)]
    return argv
