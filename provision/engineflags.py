"""How each inference engine is started: the command-line flags of vLLM, llama-server and
llama_cpp.server (llama-cpp-python) and Ollama's environment variables, each in its own spelling. The
serving units (:mod:`provision.serving`) and ``gpuprov fit``'s suggested settings both write them from
here. (Which engines are installed on PATH is :mod:`provision.engines`.) It owns the engines' ids too:
one spelling each inside gpuprov, and the words the front doors take and show for them.

- llama.cpp (llama-server): ``--ctx-size`` is the total over ``--parallel`` slots (each slot gets
  ctx/parallel); ``--n-gpu-layers`` counts the output head as a layer; ``--tensor-split`` takes
  proportions, and whole layer counts as proportions give exactly those counts (the split points are
  cumulative fractions compared with ``layer/n_gpu_layers`` in llama-model.cpp). CUDA numbers GPUs
  fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, which makes its order nvidia-smi's.
- llama_cpp.server: argparse options named after the ``Llama()`` parameters (``--n_ctx``, ``--type_k``
  as a ggml type number, ``--tensor_split`` one argument per GPU).
- Ollama: ``OLLAMA_CONTEXT_LENGTH`` is per request and ``OLLAMA_NUM_PARALLEL`` multiplies it
  (docs/faq.md: "a 2K context with 4 parallel requests will result in an 8K context");
  ``num_gpu`` is the layer count Modelfile/API option.
- vLLM: ``--max-model-len`` per sequence, ``--max-num-seqs``, ``--gpu-memory-utilization``,
  ``--tensor-parallel-size``, ``--kv-cache-dtype``.
"""

from __future__ import annotations

import math
import shlex
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from provision.fit.result import FitResult
    from provision.serving.settings import LlamaCppSettings, OllamaSettings

# -- the engines' ids -----------------------------------------------------------------------------------

#: the engines gpuprov starts, one id each inside gpuprov (serving, fit, compat, monitor, the plan); the
#: profile's keys are these ids (``serving: {vllm: ...}``, ``serving: {llama_cpp: ...}``, ``llama_cpp:``)
VLLM_ENGINE = "vllm"
OLLAMA_ENGINE = "ollama"
LLAMA_CPP_ENGINE = "llama_cpp"
ENGINE_IDS = (VLLM_ENGINE, OLLAMA_ENGINE, LLAMA_CPP_ENGINE)
#: the engine's name where people read or type one: reports, ``gpuprov fit --engine`` and its JSON
ENGINE_NAMES = {VLLM_ENGINE: "vllm", OLLAMA_ENGINE: "ollama", LLAMA_CPP_ENGINE: "llama.cpp"}
#: the engine as a command word: ``gpuprov build llama-cpp``, ``gpuprov compat plan --engine llama-cpp``
ENGINE_WORDS = {VLLM_ENGINE: "vllm", OLLAMA_ENGINE: "ollama", LLAMA_CPP_ENGINE: "llama-cpp"}


def engine_id(text: str) -> str | None:
    """The id of the engine ``text`` names in any of its spellings (id, name, command word); None: none."""
    for engine in ENGINE_IDS:
        if text in (engine, ENGINE_NAMES[engine], ENGINE_WORDS[engine]):
            return engine
    return None


#: llama-server / llama-cpp-python default physical batch (common/common.h ``n_ubatch = 512``);
#: Ollama's ``num_batch`` default is 512 too
LLAMA_SERVER_UBATCH = 512
MIB = 1024 * 1024

#: vLLM: a serving setting -> its ``vllm serve`` option
VLLM = {
    "gpu_memory_utilization": "--gpu-memory-utilization",
    "max_model_len": "--max-model-len",
    "kv_cache_dtype": "--kv-cache-dtype",
    "quantization": "--quantization",
    "attention_backend": "--attention-backend",
    "max_num_seqs": "--max-num-seqs",
    "swap_space_gib": "--swap-space",
    "tensor_parallel_size": "--tensor-parallel-size",
}
#: llama-server: a setting -> its option
LLAMA_SERVER = {
    "model": "--model",
    "n_gpu_layers": "--n-gpu-layers",
    "ctx_size": "--ctx-size",
    "parallel": "--parallel",
    "split_mode": "--split-mode",
    "tensor_split": "--tensor-split",
    "flash_attention": "--flash-attn",
    "cache_type_k": "--cache-type-k",
    "cache_type_v": "--cache-type-v",
    "n_ubatch": "--ubatch-size",
    "swa_full": "--swa-full",
    "no_mmap": "--no-mmap",
    "offline": "--offline",
}
#: python -m llama_cpp.server: a setting -> its option (Llama()'s parameter names)
LLAMA_CPP_PYTHON = {
    "model": "--model",
    "n_gpu_layers": "--n_gpu_layers",
    "ctx_size": "--n_ctx",
    "flash_attention": "--flash_attn",
    "cache_type_k": "--type_k",
    "cache_type_v": "--type_v",
    "no_mmap": "--use_mmap",
    "tensor_split": "--tensor_split",
}
#: llama_cpp.server takes KV cache types as ggml type numbers (ggml.h enum ggml_type)
GGML_TYPE_IDS = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8, "iq4_nl": 20, "bf16": 30}
#: Ollama: a setting -> its environment variable (ollama serve reads no options)
OLLAMA = {
    "host": "OLLAMA_HOST",
    "flash_attention": "OLLAMA_FLASH_ATTENTION",
    "num_parallel": "OLLAMA_NUM_PARALLEL",
    "max_loaded_models": "OLLAMA_MAX_LOADED_MODELS",
    "context_length": "OLLAMA_CONTEXT_LENGTH",
    "gpu_overhead": "OLLAMA_GPU_OVERHEAD",
    "keep_alive": "OLLAMA_KEEP_ALIVE",
    "kv_cache_type": "OLLAMA_KV_CACHE_TYPE",
    "models_dir": "OLLAMA_MODELS",
    "sched_spread": "OLLAMA_SCHED_SPREAD",
}
#: CUDA numbers GPUs fastest-first unless told otherwise; NVML (and gpuprov, nvidia-smi) by PCI bus
CUDA_ORDER = ("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
CUDA_VISIBLE = "CUDA_VISIBLE_DEVICES"


def argv_number(value: float) -> str:
    """A number as a server's command line takes it: 0.9, or 8 rather than 8.0."""
    return f"{value:g}" if not math.isclose(value, round(value)) else str(round(value))


def _pairs(table: dict[str, str], pairs: list[tuple[str, Any]]) -> list[str]:
    argv: list[str] = []
    for key, value in pairs:
        if value is not None:
            argv += [table[key], str(value)]
    return argv


# -- the serving units ------------------------------------------------------------------------------------


def vllm_argv(
    executable: str, model: str, host: str, port: int, options: list[str], extra: tuple[str, ...]
) -> list[str]:
    """``vllm serve``; ``options``: what :func:`provision.serving.vllm_versions.vllm_args` gates."""
    return [executable, "serve", model, "--host", host, "--port", str(port), *options, *extra]


def llama_server_argv(st: LlamaCppSettings, host: str, port: int) -> list[str]:
    assert st.server is not None
    argv = [st.server, LLAMA_SERVER["model"], st.model, "--host", host, "--port", str(port)]
    argv += _pairs(
        LLAMA_SERVER,
        [
            ("n_gpu_layers", st.n_gpu_layers),
            ("ctx_size", st.ctx_size),
            ("parallel", st.parallel),
            ("tensor_split", ",".join(argv_number(v) for v in st.tensor_split) if st.tensor_split else None),
            ("flash_attention", None if st.flash_attention is None else ("on" if st.flash_attention else "off")),
            ("cache_type_k", st.cache_type_k),
            ("cache_type_v", st.cache_type_v),
        ],
    )
    if st.no_mmap:
        argv.append(LLAMA_SERVER["no_mmap"])
    return [*argv, LLAMA_SERVER["offline"], *st.extra_args]


def llama_cpp_python_argv(st: LlamaCppSettings, host: str, port: int) -> list[str]:
    argv = [
        f"{st.venv}/bin/python",
        "-m",
        "llama_cpp.server",
        LLAMA_CPP_PYTHON["model"],
        st.model,
        "--host",
        host,
        "--port",
        str(port),
    ]
    argv += _pairs(
        LLAMA_CPP_PYTHON,
        [
            ("n_gpu_layers", st.n_gpu_layers),
            ("ctx_size", st.ctx_size),
            ("flash_attention", None if st.flash_attention is None else str(st.flash_attention)),
            ("cache_type_k", None if st.cache_type_k is None else GGML_TYPE_IDS[st.cache_type_k]),
            ("cache_type_v", None if st.cache_type_v is None else GGML_TYPE_IDS[st.cache_type_v]),
            ("no_mmap", "False" if st.no_mmap else None),
        ],
    )
    if st.tensor_split:  # a list option (argparse nargs="*"): one argument per GPU
        argv += [LLAMA_CPP_PYTHON["tensor_split"], *(argv_number(v) for v in st.tensor_split)]
    return argv + list(st.extra_args)


def ollama_env(st: OllamaSettings, host: str, port: int) -> list[tuple[str, str]]:
    address = f"[{host}]" if ":" in host else host
    env = [(OLLAMA["host"], f"{address}:{port}")]
    for key, value in (
        ("flash_attention", None if st.flash_attention is None else ("1" if st.flash_attention else "0")),
        ("num_parallel", st.num_parallel),
        ("max_loaded_models", st.max_loaded_models),
        ("context_length", st.context_length),
        # bytes (Ollama's envconfig.GpuOverhead parses an integer number of bytes)
        ("gpu_overhead", None if st.gpu_overhead_mib is None else st.gpu_overhead_mib * MIB),
        ("keep_alive", st.keep_alive),
        ("kv_cache_type", st.kv_cache_type),
        ("models_dir", st.models_dir),
    ):
        if value is not None:
            env.append((OLLAMA[key], str(value)))
    return env


def gpu_env(gpus: tuple[int, ...]) -> list[tuple[str, str]]:
    """The GPUs a server sees, numbered as nvidia-smi numbers them."""
    return [CUDA_ORDER, *([(CUDA_VISIBLE, ",".join(str(g) for g in gpus))] if gpus else [])]


# -- the settings that realise a fit (gpuprov fit) ------------------------------------------------------------


def llama_cpp_flags(result: FitResult) -> dict[str, object]:
    req = result.request
    assert req.context is not None
    args = [
        LLAMA_SERVER["model"],
        result.model.source,
        LLAMA_SERVER["ctx_size"],
        str(req.context * req.parallel),
        LLAMA_SERVER["parallel"],
        str(req.parallel),
        LLAMA_SERVER["n_gpu_layers"],
        str(result.n_gpu_layers or 0),
    ]
    env: dict[str, str] = {}
    if result.tensor_split is not None:
        args += [
            LLAMA_SERVER["split_mode"],
            "layer",
            LLAMA_SERVER["tensor_split"],
            ",".join(str(n) for n in result.tensor_split),
        ]
        env[CUDA_ORDER[0]] = CUDA_ORDER[1]
    if req.kv_type != "f16":
        args += [LLAMA_SERVER["cache_type_k"], str(req.kv_type), LLAMA_SERVER["cache_type_v"], str(req.kv_type)]
    args += [LLAMA_SERVER["flash_attention"], "on" if req.flash_attention else "off"]
    if req.n_ubatch != LLAMA_SERVER_UBATCH:
        args += [LLAMA_SERVER["n_ubatch"], str(req.n_ubatch)]
    if req.swa_full and any(layer.sliding_window is not None for layer in result.model.layers):
        args += [LLAMA_SERVER["swa_full"]]
    return {"args": args, "env": env, "command": _command("llama-server", args, env)}


def ollama_flags(result: FitResult) -> dict[str, object]:
    req = result.request
    env = {
        OLLAMA["context_length"]: str(req.context),
        OLLAMA["num_parallel"]: str(req.parallel),
    }
    if req.kv_type != "f16":
        env[OLLAMA["kv_cache_type"]] = str(req.kv_type)
    if req.flash_attention:
        env[OLLAMA["flash_attention"]] = "1"
    if req.reserve_mib:
        env[OLLAMA["gpu_overhead"]] = str(req.reserve_mib * MIB)
    used = [g for g in result.gpus if g.layers or g.holds_output]
    if len(used) > 1:
        env[OLLAMA["sched_spread"]] = "1"
    options: dict[str, int] = {}
    if result.verdict == "partial_offload" and result.n_gpu_layers is not None:
        options["num_gpu"] = result.n_gpu_layers
    return {"env": env, "options": options, "command": _command("ollama serve", [], env)}


def vllm_flags(result: FitResult) -> dict[str, object]:
    req = result.request
    args = [
        VLLM["max_model_len"],
        str(req.context),
        VLLM["max_num_seqs"],
        str(req.parallel),
        VLLM["gpu_memory_utilization"],
        f"{result.gpu_memory_utilization:.2f}",
    ]
    if (result.tensor_parallel_size or 1) > 1:
        args += [VLLM["tensor_parallel_size"], str(result.tensor_parallel_size)]
    if req.kv_type != "auto":
        args += [VLLM["kv_cache_dtype"], str(req.kv_type)]
    env: dict[str, str] = {}
    chosen = [str(g.index) for g in result.gpus if g.layers]
    if len(chosen) < len(result.gpus):
        env[CUDA_VISIBLE] = ",".join(chosen)
    return {"args": args, "env": env, "command": _command(f"vllm serve {shlex.quote(result.model.source)}", args, env)}


def engine_flags(result: FitResult) -> dict[str, object]:
    engine = result.request.engine
    if engine == LLAMA_CPP_ENGINE:
        return llama_cpp_flags(result)
    if engine == OLLAMA_ENGINE:
        return ollama_flags(result)
    return vllm_flags(result)


def _command(program: str, args: list[str], env: dict[str, str]) -> str:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    line = " ".join([program, *(shlex.quote(a) for a in args)])
    return f"{prefix} {line}" if prefix else line
