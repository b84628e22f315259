"""Reading the ``serving`` section of a profile (validation, with the field named in every error) and
showing it; the section registers itself with its plan and gather hooks. Paths that end up in systemd
directives other than ``ExecStart=`` must be plain paths; a model id cannot start with '-', and
``extra_args`` cannot set what profile keys own (host, port, key)."""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from provision.engineflags import ENGINE_IDS, LLAMA_CPP_ENGINE, OLLAMA_ENGINE, VLLM_ENGINE
from provision.profiles.schema import (
    Block,
    SectionType,
    _bool,
    _int,
    _mapping,
    _number,
    _show,
    _text,
    _Where,
    register_section,
)
from provision.serving.facts import gather
from provision.serving.planning import plan_serving
from provision.serving.settings import (
    _ENGINE_KEYS,
    _PLAIN_PATH,
    _SERVING_KEYS,
    DEFAULT_PORT,
    VLLM_ATTENTION_BACKENDS,
    VLLM_QUANTIZATIONS,
    LlamaCppSettings,
    OllamaSettings,
    ServingSection,
    VllmSettings,
)

if TYPE_CHECKING:
    from collections.abc import Callable


def _path(value: Any, where: _Where, what: str) -> str:
    text = _text(value, where, what)
    if not text.startswith("/") or "\n" in text:
        raise where.error(f"expected {what} (an absolute path), got {_show(value)}")
    if not _PLAIN_PATH.match(text) or "/../" in text + "/" or "/./" in text + "/":
        raise where.error(
            f"{_show(text)}: {what} must be a plain absolute path (letters, digits, / . _ - + @ , = ~): "
            "systemd's path directives have no quoting for spaces, ':' or quotes"
        )
    longest = max((len(part.encode()) for part in text.split("/")), default=0)
    if len(text.encode()) > PATH_MAX_BYTES or longest > NAME_MAX_BYTES:
        raise where.error(
            f"{_show(text)}: {what} is longer than Linux allows (a path of at most {PATH_MAX_BYTES} bytes, "
            f"each name at most {NAME_MAX_BYTES})"
        )
    return str(PurePosixPath(text))


#: Linux's PATH_MAX and NAME_MAX (limits.h): a longer path in a profile could never be opened
PATH_MAX_BYTES = 4095
NAME_MAX_BYTES = 255


def _kv_types(engine: str) -> tuple[str, ...]:
    """The KV cache types an engine accepts: gpuprov fit's table (imported here, not at load: fit is big)."""
    from provision.fit.memory_model import KV_CACHE_TYPES

    return KV_CACHE_TYPES[engine]


def _control(text: str) -> bool:
    """Newlines, tabs and other control characters, Unicode line separators: never in a unit."""
    return any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in text)


#: server options that profile keys own: in extra_args they would override them unseen (plan and doctor
#: read where a server listens, and whether it needs a key, from those keys and the unit's own options)
OWNED_OPTIONS = {
    "host": "serving.host",
    "port": "serving.port",
    "api-key": "serving.api_key: true (a key in a root-only file, not in the world-readable unit)",
    "api-key-file": "serving.api_key: true",
}


def _owned_option(arg: str) -> str | None:
    """The profile key an extra argument would override: ``--host``, ``--port=80``, ``--api_key``, and the
    abbreviations Python's argparse accepts (``--ho``, ``--a``; vLLM and llama_cpp.server use argparse)."""
    if not arg.startswith("--"):
        return None
    name = arg[2:].split("=", 1)[0].replace("_", "-")
    if not name:  # "--": the end of the options
        return None
    for option, key in OWNED_OPTIONS.items():
        if option.startswith(name):
            return key
    return None


#: options that read the server's settings from a file (``vllm serve --config FILE``, llama_cpp.server's
#: ``--config_file``): such a file can set host, port and key where neither the profile nor plan see them,
#: and it changes without gpuprov knowing; refused rather than read (what plan read would not be what the
#: unit starts with after the file changes, and the file is not gpuprov's to record or revert)
CONFIG_FILE_OPTIONS = {VLLM_ENGINE: "config", LLAMA_CPP_ENGINE: "config-file"}


def _config_option(arg: str, engine: str) -> bool:
    """``--config FILE``, ``--config=FILE`` and argparse's abbreviations of it (``--conf``)."""
    name = arg[2:].split("=", 1)[0].replace("_", "-") if arg.startswith("--") else ""
    return len(name) >= 2 and CONFIG_FILE_OPTIONS[engine].startswith(name)


def _args(value: Any, where: _Where, engine: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise where.error(f"expected a list of arguments (one per item, no shell), got {_show(value)}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, str | int | float):
            raise where.error(f"expected text or a number per argument, got {_show(item)}")
        text = str(item)
        if _control(text):
            raise where.error(f"{_show(text)}: an argument cannot contain a newline or control character")
        key = _owned_option(text)
        if key is not None:
            raise where.error(f"{_show(text)}: set {key} instead of passing it in extra_args")
        if _config_option(text, engine):
            raise where.error(
                f"{_show(text)}: a server config file can set host, port and API key unseen: set serving.host, "
                f"serving.port, serving.api_key and serving.{engine}.* (other options one by one in extra_args)"
            )
        out.append(text)
    return tuple(out)


def _not_an_option(text: str, where: _Where, what: str) -> str:
    """A value that lands on the command line as a positional argument: one starting with '-' would be
    read as an option (a model id "--trust-remote-code" would turn that on)."""
    if text.startswith("-"):
        raise where.error(f"{_show(text)}: {what} cannot start with '-' (the server would read it as an option)")
    return text


def _one_line(value: Any, where: _Where, what: str) -> str:
    text = _text(value, where, what)
    if _control(text):
        raise where.error(f"{_show(text)}: {what} cannot contain a newline or control character")
    return text


def _choice(value: Any, where: _Where, choices: tuple[str, ...], *, upper: bool = False) -> str:
    text = _one_line(value, where, "a name")
    norm = text.upper() if upper else text.lower()
    if norm not in choices:
        raise where.error(f"{_show(text)} is not one of {', '.join(choices)}")
    return norm


def _exactly_one(data: dict[str, Any], keys: tuple[str, str], where: _Where) -> None:
    if sum(1 for k in keys if data.get(k) is not None) != 1:
        raise where.error(f"set exactly one of {keys[0]} or {keys[1]}")


def _parse_vllm(value: Any, w: _Where) -> VllmSettings:
    d = {k: v for k, v in _mapping(value, w, _ENGINE_KEYS[VLLM_ENGINE]).items() if v is not None}
    if "model" not in d:
        raise w.error("expected model: a Hugging Face model id or a local model directory")
    _exactly_one(d, ("venv", "executable"), w)
    model = _not_an_option(_one_line(d["model"], w["model"], "a model id or directory"), w["model"], "a model id")
    return VllmSettings(
        model=model,
        venv=_path(d["venv"], w["venv"], "the virtualenv directory") if "venv" in d else None,
        executable=_path(d["executable"], w["executable"], "the vllm executable") if "executable" in d else None,
        gpu_memory_utilization=(
            _number(d["gpu_memory_utilization"], w["gpu_memory_utilization"], "a fraction of GPU memory", 0, 1)
            if "gpu_memory_utilization" in d
            else None
        ),
        max_model_len=_int(d["max_model_len"], w["max_model_len"], "a context length in tokens", 16, 10_000_000)
        if "max_model_len" in d
        else None,
        kv_cache_dtype=_choice(d["kv_cache_dtype"], w["kv_cache_dtype"], _kv_types(VLLM_ENGINE))
        if "kv_cache_dtype" in d
        else None,
        quantization=_choice(d["quantization"], w["quantization"], VLLM_QUANTIZATIONS) if "quantization" in d else None,
        attention_backend=_choice(d["attention_backend"], w["attention_backend"], VLLM_ATTENTION_BACKENDS, upper=True)
        if "attention_backend" in d
        else None,
        max_num_seqs=_int(d["max_num_seqs"], w["max_num_seqs"], "a number of sequences", 1, 65536)
        if "max_num_seqs" in d
        else None,
        swap_space_gib=_number(d["swap_space_gib"], w["swap_space_gib"], "CPU swap space in GiB", -1, 4096)
        if "swap_space_gib" in d
        else None,
        extra_args=_args(d.get("extra_args"), w["extra_args"], VLLM_ENGINE),
        tensor_parallel_size=_int(d["tensor_parallel_size"], w["tensor_parallel_size"], "a number of GPUs", 1, 64)
        if "tensor_parallel_size" in d
        else None,
    )


def _parse_ollama(value: Any, w: _Where) -> OllamaSettings:
    d = {
        k: v
        for k, v in _mapping(value if value is not None else {}, w, _ENGINE_KEYS[OLLAMA_ENGINE]).items()
        if v is not None
    }
    keep_alive = None
    if "keep_alive" in d:
        keep_alive = str(d["keep_alive"]) if isinstance(d["keep_alive"], int) else _one_line(d["keep_alive"], w, "")
        if not re.fullmatch(r"-?\d+(\.\d+)?(ns|us|ms|s|m|h)?", keep_alive):
            raise w["keep_alive"].error(f"{_show(keep_alive)} is not a duration like 5m, 1h, 300 or -1 (forever)")
    return OllamaSettings(
        flash_attention=_bool(d["flash_attention"], w["flash_attention"]) if "flash_attention" in d else None,
        num_parallel=_int(d["num_parallel"], w["num_parallel"], "parallel requests per model", 1, 1024)
        if "num_parallel" in d
        else None,
        max_loaded_models=_int(d["max_loaded_models"], w["max_loaded_models"], "a number of models", 1, 64)
        if "max_loaded_models" in d
        else None,
        context_length=_int(d["context_length"], w["context_length"], "a context length in tokens", 256, 10_000_000)
        if "context_length" in d
        else None,
        gpu_overhead_mib=_int(d["gpu_overhead_mib"], w["gpu_overhead_mib"], "MiB of GPU memory kept free", 0, 1 << 20)
        if "gpu_overhead_mib" in d
        else None,
        keep_alive=keep_alive,
        kv_cache_type=_choice(d["kv_cache_type"], w["kv_cache_type"], _kv_types(OLLAMA_ENGINE))
        if "kv_cache_type" in d
        else None,
        models_dir=_path(d["models_dir"], w["models_dir"], "the models directory") if "models_dir" in d else None,
    )


def _parse_llama_cpp(value: Any, w: _Where) -> LlamaCppSettings:
    d = {k: v for k, v in _mapping(value, w, _ENGINE_KEYS[LLAMA_CPP_ENGINE]).items() if v is not None}
    if "model" not in d:
        raise w.error("expected model: the path of a GGUF file")
    _exactly_one(d, ("server", "venv"), w)
    split: tuple[float, ...] = ()
    if "tensor_split" in d:
        ts = d["tensor_split"]
        if not isinstance(ts, list) or not ts:
            raise w["tensor_split"].error(f"expected a list of proportions per GPU, got {_show(ts)}")
        split = tuple(_number(v, w["tensor_split"], "a proportion", -1e-9, 1e6) for v in ts)
        if not any(v > 0 for v in split):
            raise w["tensor_split"].error("at least one proportion must be above 0")
    kv = _kv_types(LLAMA_CPP_ENGINE)
    out = LlamaCppSettings(
        model=_one_line(d["model"], w["model"], "a GGUF path"),
        server=_path(d["server"], w["server"], "the llama-server binary") if "server" in d else None,
        venv=_path(d["venv"], w["venv"], "the virtualenv directory") if "venv" in d else None,
        n_gpu_layers=_int(d["n_gpu_layers"], w["n_gpu_layers"], "a number of layers", 0, 100_000)
        if "n_gpu_layers" in d
        else None,
        ctx_size=_int(d["ctx_size"], w["ctx_size"], "a context size in tokens", 0, 10_000_000)
        if "ctx_size" in d
        else None,
        parallel=_int(d["parallel"], w["parallel"], "a number of slots", 1, 4096) if "parallel" in d else None,
        tensor_split=split,
        no_mmap=_bool(d["no_mmap"], w["no_mmap"]) if "no_mmap" in d else False,
        flash_attention=_bool(d["flash_attention"], w["flash_attention"]) if "flash_attention" in d else None,
        cache_type_k=_choice(d["cache_type_k"], w["cache_type_k"], kv) if "cache_type_k" in d else None,
        cache_type_v=_choice(d["cache_type_v"], w["cache_type_v"], kv) if "cache_type_v" in d else None,
        extra_args=_args(d.get("extra_args"), w["extra_args"], LLAMA_CPP_ENGINE),
    )
    if not out.model.startswith("/"):
        raise w["model"].error(f"{_show(out.model)}: expected the absolute path of a GGUF file")
    if out.venv is not None and out.parallel is not None:
        raise w["parallel"].error("parallel slots are a llama-server option; llama_cpp.server (venv) has none")
    return out


def parse_serving(value: Any, where: _Where) -> ServingSection:
    data = _mapping(value, where, _SERVING_KEYS)
    engines = [e for e in ENGINE_IDS if e in data]
    if len(engines) != 1:
        raise where.error(f"expected exactly one server: one of {', '.join(ENGINE_IDS)} (got {len(engines)})")
    engine = engines[0]
    parsers: dict[str, Callable[[Any, _Where], VllmSettings | OllamaSettings | LlamaCppSettings]] = {
        VLLM_ENGINE: _parse_vllm,
        OLLAMA_ENGINE: _parse_ollama,
        LLAMA_CPP_ENGINE: _parse_llama_cpp,
    }
    parser = parsers[engine]
    settings = parser(data[engine], where[engine])
    host = "127.0.0.1"
    if data.get("host") is not None:
        host = _one_line(data["host"], where["host"], "an IP address")
        try:
            host = str(ipaddress.ip_address(host))
        except ValueError:
            raise where["host"].error(f"{_show(host)} is not an IP address (127.0.0.1, 0.0.0.0, ::1 ...)") from None
    port = DEFAULT_PORT[engine]
    if data.get("port") is not None:
        port = _int(data["port"], where["port"], "a TCP port", 1, 65535)
    gpus: tuple[int, ...] = ()
    if data.get("gpus") is not None:
        raw = data["gpus"]
        if not isinstance(raw, list):
            raise where["gpus"].error(f"expected a list of GPU indices like [0, 1], got {_show(raw)}")
        gpus = tuple(_int(g, where["gpus"], "a GPU index", 0, 63) for g in raw)
        if len(set(gpus)) != len(gpus):
            raise where["gpus"].error(f"{_show(raw)} names a GPU twice")
    tp = settings.tensor_parallel_size if isinstance(settings, VllmSettings) else None
    if tp is not None and gpus and tp > len(gpus):
        raise where[engine]["tensor_parallel_size"].error(
            f"{tp} GPUs, but serving.gpus gives vLLM {len(gpus)}: list {tp} GPUs there, or fewer here"
        )
    api_key = _bool(data["api_key"], where["api_key"]) if data.get("api_key") is not None else False
    if api_key and engine == OLLAMA_ENGINE:
        raise where["api_key"].error(
            "Ollama has no API key: keep it on 127.0.0.1, or put a proxy with one in front "
            "(api_key: false where a profile this one extends sets it)"
        )
    return ServingSection(engine, settings, host, port, gpus, api_key)


def serving_dict(s: ServingSection) -> dict[str, Any]:
    settings = {}
    for key in _ENGINE_KEYS[s.engine]:
        value = getattr(s.settings, key)
        if value is None or value == () or (key == "no_mmap" and value is False):
            continue
        settings[key] = list(value) if isinstance(value, tuple) else value
    out: dict[str, Any] = {"host": s.host, "port": s.port, s.engine: settings, "api_key": s.api_key}
    if s.gpus:
        out["gpus"] = list(s.gpus)
    return out


register_section(
    "serving",
    # a profile extending another may switch engines: the parent's engine block is dropped, and its
    # port (Ollama's 11434 is no port for llama.cpp) unless the child sets one: the new engine's default.
    # Keeping the engine, the child's block merges into the parent's (serving.vllm.model alone changes
    # the model); choosing the other program (executable for venv) drops the parent's, and for
    # llama.cpp the llama-server-only parallel slots
    SectionType(
        parse_serving,
        serving_dict,
        exclusive=(ENGINE_IDS,),
        tied=("port",),
        blocks={
            VLLM_ENGINE: Block(exclusive=(("venv", "executable"),)),
            OLLAMA_ENGINE: Block(),
            LLAMA_CPP_ENGINE: Block(exclusive=(("server", "venv"),), tied=("parallel",)),
        },
        plan=plan_serving,
        gather=gather,
        # the server runs from the environment a stack section makes earlier in the same apply
        after=("stack",),
    ),
)
