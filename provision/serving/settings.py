"""The serving section's settings (one server per profile: vLLM, Ollama or llama.cpp), its constants and
its error. A profile names one server::

    serving:
      host: 127.0.0.1          # default; another address is an explicit choice (warned about without a key)
      port: 8000               # default per engine: vLLM 8000, llama.cpp 8080, Ollama 11434
      gpus: [0]                # CUDA_VISIBLE_DEVICES, and what ExecStartPre waits for (default: all)
      api_key: true            # a key kept in a root-owned 0600 file, created on first apply
      vllm:      {model: ..., venv: ..., gpu_memory_utilization: 0.85, max_model_len: 8192, ...}
      # or ollama: {...}  — a drop-in for the existing ollama.service, never a replacement
      # or llama_cpp: {model: /srv/m.gguf, server: /usr/local/bin/llama-server | venv: DIR, ...}
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from provision.engineflags import ENGINE_IDS, LLAMA_CPP_ENGINE, OLLAMA_ENGINE, VLLM_ENGINE
from provision.errors import UsageError
from provision.serving.units import UNIT

if TYPE_CHECKING:
    pass


DEFAULT_PORT = {VLLM_ENGINE: 8000, OLLAMA_ENGINE: 11434, LLAMA_CPP_ENGINE: 8080}
#: the dedicated system user of the servers gpuprov runs (Ollama's installer creates ``ollama``)
USER = {VLLM_ENGINE: "gpuprov-vllm", OLLAMA_ENGINE: "ollama", LLAMA_CPP_ENGINE: "gpuprov-llama-cpp"}
#: Ollama's installer makes the ollama user's home here; models go to ~/.ollama/models
OLLAMA_HOME = "/usr/share/ollama"
SECRETS_DIR = "/etc/gpuprov/serving"
#: how long ExecStartPre waits for NVML to see the GPUs (ollama#7669: servers started before the GPU)
WAIT_GPU_S = 120
#: vLLM loads (and may download) the model before it listens; llama.cpp and Ollama start at once
START_TIMEOUT_S = {VLLM_ENGINE: 1800, OLLAMA_ENGINE: 300, LLAMA_CPP_ENGINE: 600}
PLACEHOLDER_KEY = "REPLACE-WITH-A-SECRET-KEY"
#: where a home directory hides a path from a unit with ProtectHome= (systemd.exec(5))
HOME_DIRS = ("/home", "/root", "/run/user")
#: where PrivateTmp= gives a unit empty directories of its own (systemd.exec(5)): the host's files there
#: are out of its sight, and binding them back is no way out (the private /tmp is mounted over them)
TMP_DIRS = ("/tmp", "/var/tmp")

#: vLLM --attention-backend values (vLLM docs, "Attention Backend Feature Support")
VLLM_ATTENTION_BACKENDS = ("FLASH_ATTN", "FLASHINFER", "TRITON_ATTN", "XFORMERS", "TORCH_SDPA", "FLEX_ATTENTION")
#: vLLM --quantization values gpuprov lets a profile name (vLLM docs, "Quantization")
VLLM_QUANTIZATIONS = (
    "awq",
    "awq_marlin",
    "gptq",
    "gptq_marlin",
    "fp8",
    "bitsandbytes",
    "gguf",
    "compressed-tensors",
    "modelopt",
    "marlin",
    "experts_int8",
)


# a path that may appear in a directive other than ExecStart= (binds, working directories): no
# quoting exists for all of them (BindReadOnlyPaths= splits on ':'), so such paths must be plain
_PLAIN_PATH = re.compile(r"^/[A-Za-z0-9._+@,=~/-]*$")


class ServingError(UsageError):
    """A serving setting that cannot be turned into a unit on this host (a path systemd cannot carry)."""


# -- the section --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VllmSettings:
    #: a Hugging Face model id or a local directory
    model: str
    #: a virtualenv with vLLM (runs VENV/bin/vllm) — or ``executable``, the vllm script itself
    venv: str | None = None
    executable: str | None = None
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    kv_cache_dtype: str | None = None
    quantization: str | None = None
    attention_backend: str | None = None
    max_num_seqs: int | None = None
    swap_space_gib: float | None = None
    extra_args: tuple[str, ...] = ()
    #: the GPUs vLLM splits the model over (``--tensor-parallel-size``; None: vLLM's default, one GPU);
    #: no more than the GPUs it sees (serving.gpus, or the host's), and what ``fit`` checks the model on
    tensor_parallel_size: int | None = None


@dataclass(frozen=True)
class OllamaSettings:
    flash_attention: bool | None = None
    num_parallel: int | None = None
    max_loaded_models: int | None = None
    context_length: int | None = None
    gpu_overhead_mib: int | None = None
    keep_alive: str | None = None
    kv_cache_type: str | None = None
    #: OLLAMA_MODELS (default: ~ollama/.ollama/models)
    models_dir: str | None = None


@dataclass(frozen=True)
class LlamaCppSettings:
    #: a GGUF file
    model: str
    #: llama.cpp's llama-server binary — or ``venv``, a llama-cpp-python[server] virtualenv
    server: str | None = None
    venv: str | None = None
    n_gpu_layers: int | None = None
    ctx_size: int | None = None
    parallel: int | None = None
    tensor_split: tuple[float, ...] = ()
    no_mmap: bool = False
    flash_attention: bool | None = None
    cache_type_k: str | None = None
    cache_type_v: str | None = None
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServingSection:
    engine: str
    settings: VllmSettings | OllamaSettings | LlamaCppSettings
    host: str = "127.0.0.1"
    port: int = 0
    #: GPU indices the server may use (NVML/PCI order); empty: all
    gpus: tuple[int, ...] = ()
    api_key: bool = False

    @property
    def loopback(self) -> bool:
        return ipaddress.ip_address(self.host).is_loopback

    @property
    def unit(self) -> str:
        return UNIT[self.engine]


_ENGINE_KEYS = {
    VLLM_ENGINE: (
        "model",
        "venv",
        "executable",
        "gpu_memory_utilization",
        "max_model_len",
        "kv_cache_dtype",
        "quantization",
        "attention_backend",
        "max_num_seqs",
        "swap_space_gib",
        "extra_args",
        "tensor_parallel_size",
    ),
    OLLAMA_ENGINE: (
        "flash_attention",
        "num_parallel",
        "max_loaded_models",
        "context_length",
        "gpu_overhead_mib",
        "keep_alive",
        "kv_cache_type",
        "models_dir",
    ),
    LLAMA_CPP_ENGINE: (
        "model",
        "server",
        "venv",
        "n_gpu_layers",
        "ctx_size",
        "parallel",
        "tensor_split",
        "no_mmap",
        "flash_attention",
        "cache_type_k",
        "cache_type_v",
        "extra_args",
    ),
}
_SERVING_KEYS = ("host", "port", "gpus", "api_key", *ENGINE_IDS)
