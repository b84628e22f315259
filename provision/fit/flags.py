"""The engine settings that realise a fit: flags and environment, each engine in its own spelling.

- llama.cpp (llama-server): ``--ctx-size`` is the total over ``--parallel`` slots (each slot gets
  ctx/parallel); ``--n-gpu-layers`` counts the output head as a layer; ``--tensor-split`` takes
  proportions, and whole layer counts as proportions give exactly those counts (the split points are
  cumulative fractions compared with ``layer/n_gpu_layers`` in llama-model.cpp). CUDA numbers GPUs
  fastest first unless ``CUDA_DEVICE_ORDER=PCI_BUS_ID``, which makes its order nvidia-smi's.
- Ollama: ``OLLAMA_CONTEXT_LENGTH`` is per request and ``OLLAMA_NUM_PARALLEL`` multiplies it
  (docs/faq.md: "a 2K context with 4 parallel requests will result in an 8K context");
  ``num_gpu`` is the layer count Modelfile/API option.
- vLLM: ``--max-model-len`` per sequence, ``--max-num-seqs``, ``--gpu-memory-utilization``,
  ``--tensor-parallel-size``, ``--kv-cache-dtype``.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from provision.fit import memory_model as mm

if TYPE_CHECKING:
    from provision.fit.fitting import FitResult


def llama_cpp_flags(result: FitResult) -> dict[str, object]:
    req = result.request
    assert req.context is not None
    args = [
        "--model", result.model.source,
        "--ctx-size", str(req.context * req.parallel),
        "--parallel", str(req.parallel),
        "--n-gpu-layers", str(result.n_gpu_layers or 0),
    ]  # fmt: skip
    env: dict[str, str] = {}
    if result.tensor_split is not None:
        args += ["--split-mode", "layer", "--tensor-split", ",".join(str(n) for n in result.tensor_split)]
        env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
    if req.kv_type != "f16":
        args += ["--cache-type-k", str(req.kv_type), "--cache-type-v", str(req.kv_type)]
    args += ["--flash-attn", "on" if req.flash_attention else "off"]
    if req.n_ubatch != mm.LLAMA_CPP_UBATCH:
        args += ["--ubatch-size", str(req.n_ubatch)]
    if req.swa_full and any(layer.sliding_window is not None for layer in result.model.layers):
        args += ["--swa-full"]
    return {"args": args, "env": env, "command": _command("llama-server", args, env)}


def ollama_flags(result: FitResult) -> dict[str, object]:
    req = result.request
    env = {
        "OLLAMA_CONTEXT_LENGTH": str(req.context),
        "OLLAMA_NUM_PARALLEL": str(req.parallel),
    }
    if req.kv_type != "f16":
        env["OLLAMA_KV_CACHE_TYPE"] = str(req.kv_type)
    if req.flash_attention:
        env["OLLAMA_FLASH_ATTENTION"] = "1"
    if req.reserve_mib:
        env["OLLAMA_GPU_OVERHEAD"] = str(req.reserve_mib * mm.MIB)
    used = [g for g in result.gpus if g.layers or g.holds_output]
    if len(used) > 1:
        env["OLLAMA_SCHED_SPREAD"] = "1"
    options: dict[str, int] = {}
    if result.verdict == "partial_offload" and result.n_gpu_layers is not None:
        options["num_gpu"] = result.n_gpu_layers
    return {"env": env, "options": options, "command": _command("ollama serve", [], env)}


def vllm_flags(result: FitResult) -> dict[str, object]:
    req = result.request
    args = [
        "--max-model-len", str(req.context),
        "--max-num-seqs", str(req.parallel),
        "--gpu-memory-utilization", f"{result.gpu_memory_utilization:.2f}",
    ]  # fmt: skip
    if (result.tensor_parallel_size or 1) > 1:
        args += ["--tensor-parallel-size", str(result.tensor_parallel_size)]
    if req.kv_type != "auto":
        args += ["--kv-cache-dtype", str(req.kv_type)]
    env: dict[str, str] = {}
    chosen = [str(g.index) for g in result.gpus if g.layers]
    if len(chosen) < len(result.gpus):
        env["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    return {"args": args, "env": env, "command": _command(f"vllm serve {shlex.quote(result.model.source)}", args, env)}


def engine_flags(result: FitResult) -> dict[str, object]:
    engine = result.request.engine
    if engine == "llama.cpp":
        return llama_cpp_flags(result)
    if engine == "ollama":
        return ollama_flags(result)
    return vllm_flags(result)


def _command(program: str, args: list[str], env: dict[str, str]) -> str:
    prefix = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
    line = " ".join([program, *(shlex.quote(a) for a in args)])
    return f"{prefix} {line}" if prefix else line
