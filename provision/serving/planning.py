"""The serving part of a plan: the section's files and units into the desired state, warnings into its
notes, and what an earlier profile's server left and this one does not want taken away (its unit
disabled and stopped, its files and key removed)."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from provision.engineflags import LLAMA_CPP_ENGINE, VLLM_ENGINE
from provision.errors import GpuprovError
from provision.serving.commandline import server_argv
from provision.serving.facts import ServingHost
from provision.serving.files import ServingFiles, serving_files
from provision.serving.keyfiles import KEY_FILES
from provision.serving.settings import (
    OLLAMA_HOME,
    LlamaCppSettings,
    OllamaSettings,
    ServingError,
    ServingSection,
    VllmSettings,
)
from provision.serving.units import MANAGED_FILES, MANAGED_UNITS, OLLAMA_DOWNLOAD, OLLAMA_DROPIN, UNIT, ollama_missing

if TYPE_CHECKING:
    from provision.plantypes import Desired, HostState
    from provision.profiles import Profile
    from provision.snapshot import Snapshot


# -- plan -------------------------------------------------------------------------------------------------


def plan_serving(desired: Desired, snapshot: Snapshot, profile: Profile, host: HostState) -> None:
    """The serving section's plan hook: files and units into ``desired.serving_*``, warnings into notes,
    from what :func:`provision.serving.facts.gather` read (no I/O here)."""
    from provision.plantypes import FileTarget, PlanError, UnitTarget

    facts = host.serving
    if facts is None:
        raise PlanError(f"profile {profile.name}: serving: the host was not gathered for it")
    section = profile.sections.get("serving")
    if section is None:
        _remove_stale(desired, host, facts, profile.name, None)
        return
    if isinstance(section.settings, OllamaSettings) and host.known and facts.ollama is None:
        where = f"in the image tree {host.root}" if host.image else "on this host"
        raise PlanError(
            f"profile {profile.name}: serving: {ollama_missing(where)}: install it with its installer "
            f"({OLLAMA_DOWNLOAD}), then run apply again"
        )
    try:
        files = serving_files(profile.name, section, python=host.python, host=facts)
    except ServingError as exc:
        raise PlanError(f"profile {profile.name}: serving: {exc}") from None
    known = {g.index for g in snapshot.gpus}
    missing = [g for g in section.gpus if g not in known]
    if missing and snapshot.gpus:
        raise PlanError(
            f"profile {profile.name}: serving.gpus names GPU {', '.join(map(str, missing))}, but this host has "
            f"GPU {', '.join(str(g.index) for g in snapshot.gpus)}"
        )
    tp = section.settings.tensor_parallel_size if isinstance(section.settings, VllmSettings) else None
    if tp is not None and snapshot.gpus and tp > len(section.gpus or snapshot.gpus):
        raise PlanError(
            f"profile {profile.name}: serving.vllm.tensor_parallel_size is {tp}, but vLLM sees "
            f"{len(section.gpus or snapshot.gpus)} GPU(s) here: lower it, or run on a host with more"
        )
    for path, content, mode, note in files.files:
        desired.serving_files.append(FileTarget(path, content, mode, note))
    start = host.systemd_running
    program = server_argv(section)[0] if files.owned else None
    # a stack section makes the server's environment earlier in the same apply (provision.stack)
    made_by_stack = bool(desired.stack) and desired.stack.get("link") == getattr(section.settings, "venv", None)
    if program is not None and host.known and not facts.present[program] and not made_by_stack:
        start = False
        desired.notes.append(
            f"{program} is not on this host: {files.unit} is written and enabled, and starts once it is installed"
        )
    if files.owned:
        desired.serving_units.append(UnitTarget(files.unit, True, now=start, note=f"the {section.engine} server"))
    elif host.known and host.units.get(files.unit) is not None and host.units[files.unit].path is None:
        desired.notes.append(
            f"{files.unit} is not installed: the drop-in takes effect once Ollama's installer has written it"
        )
    if files.key_file:
        desired.notes.append(
            f"API key: kept in {files.key_file} (root, 0600, put right on every apply), made by apply and "
            "never shown; a key there that gpuprov did not make (gpuprov render's placeholder, or one written "
            "by hand) is replaced, the old one kept for gpuprov revert; clients send it as 'Authorization: "
            "Bearer KEY'"
        )
        if host.known:
            desired.notes.extend(facts.key_notes[files.key_file])
    if isinstance(section.settings, OllamaSettings) and host.known:
        installed = host.units.get(files.unit) is None or host.units[files.unit].path is not None
        for directory, what in (
            (OLLAMA_HOME if installed else None, "Ollama's installer makes it"),
            (section.settings.models_dir, ""),
        ):
            if directory and not facts.dirs[directory]:
                desired.notes.append(
                    f"{directory} does not exist: the sandbox skips it, and Ollama cannot write there until it does "
                    f"({what or 'create it, owned by the ollama user'})"
                )
    for line in files.refusals:
        desired.refusals.append(line)
        desired.notes.append(f"WARNING: {line} (apply refuses this)")
    desired.notes.extend(files.notes)
    desired.notes.extend(fit_notes(section, snapshot, facts))
    desired.serving = {**files.to_dict(), "start": start}
    _remove_stale(desired, host, facts, profile.name, files)


def _remove_stale(
    desired: Desired, host: HostState, facts: ServingHost, profile_name: str, files: ServingFiles | None
) -> None:
    """What an earlier profile's server left that this one does not want (another engine, no server, no
    key): its unit disabled and stopped, its unit or drop-in, sysusers entry and key file removed. Only on
    this host (a snapshot of another does not say what is installed there); the system user stays."""
    from provision.plantypes import FileTarget, UnitTarget

    if not host.known:
        return
    wanted = {f[0] for f in files.files} if files is not None else set()
    if files is not None and files.key_file:
        wanted.add(files.key_file)
    runs = f"the {files.engine} server" if files is not None else "no server"
    why = f"no longer used (profile {profile_name} runs {runs})"
    for unit in MANAGED_UNITS:
        state = host.units.get(unit)
        if unit == UNIT["ollama"] or (files is not None and unit == files.unit) or state is None:
            continue  # Ollama's own unit is the vendor's: only gpuprov's drop-in goes
        if state.path is not None or state.enabled:
            desired.serving_units.append(UnitTarget(unit, False, now=True, note=f"{why}: disabled and stopped"))
    for path in MANAGED_FILES:
        file_state = host.files.get(path)
        if path in wanted or file_state is None or file_state.content is None:
            continue
        dirs = (str(PurePosixPath(OLLAMA_DROPIN).parent),) if path == OLLAMA_DROPIN else ()
        desired.serving_files.append(FileTarget(path, None, "0644", f"{why}: removed", dirs))
        if path == OLLAMA_DROPIN:
            desired.notes.append(
                f"{UNIT['ollama']} (Ollama's own unit) stays as its installer set it up, restarted without "
                f"gpuprov's drop-in if it runs: systemctl disable --now {UNIT['ollama']} if the GPU is for the "
                "new server alone"
            )
    for path in KEY_FILES:
        # never read (secret): removed when there; a user who cannot look into the directory is told nothing
        if path not in wanted and facts.present[path]:
            desired.serving_files.append(FileTarget(path, None, "0600", f"{why}: an API key, removed", secret=True))


def fit_notes(section: ServingSection, snapshot: Snapshot, facts: ServingHost) -> list[str]:
    """``gpuprov fit`` on the profile's model where the model is a local file or directory here (read by
    the gather hook)."""
    st = section.settings
    model = getattr(st, "model", None)
    if not model or not model.startswith("/") or not snapshot.gpus:
        return []
    if not facts.present.get(model):
        return [f"serving model {model} is not on this host yet"]
    if isinstance(st, LlamaCppSettings) and st.n_gpu_layers == 0:
        return []
    if facts.model_error is not None:
        return [f"serving model {model}: cannot check whether it fits ({facts.model_error})"]
    spec = facts.model
    assert spec is not None
    # imported only for a model to fit (fit needs gguf and numpy: ~0.15 s of every plan otherwise)
    from provision.fit import FitRequest, fit_model, gpus_from_snapshot

    try:
        if isinstance(st, LlamaCppSettings):
            # llama-server's --ctx-size is the total over its --parallel slots (0: the trained context);
            # llama-cpp-python (venv) keeps a full-size sliding-window KV cache (llama_context_default_params)
            slots = st.parallel or 1
            total = spec.context_length if st.ctx_size == 0 else st.ctx_size
            request = FitRequest(
                engine=LLAMA_CPP_ENGINE,
                context=max(total // slots, 1) if total else None,
                parallel=slots,
                kv_type=st.cache_type_k,
                flash_attention=st.flash_attention,
                swa_full=st.venv is not None,
            )
        else:
            assert isinstance(st, VllmSettings)
            request = FitRequest(
                engine=VLLM_ENGINE,
                context=st.max_model_len,
                parallel=st.max_num_seqs or 1,
                kv_type=st.kv_cache_dtype,
                gpu_memory_utilization=st.gpu_memory_utilization,
                # the installed release decides how vLLM profiles (V0 before 0.8.0: whole max-model-len prompts)
                vllm_version=str(facts.vllm_version) if facts.vllm_version is not None else None,
            )
        gpus = [g for g in gpus_from_snapshot(snapshot) if not section.gpus or g.index in section.gpus]
        if isinstance(st, VllmSettings):  # vLLM loads the model on tensor_parallel_size GPUs, the first it sees
            gpus = gpus[: st.tensor_parallel_size or 1]
        result = fit_model(spec, gpus, request)
    except GpuprovError as exc:
        return [f"serving model {model}: cannot check whether it fits ({exc})"]
    if result.fits:
        return []
    return [
        f"WARNING: serving model {model} does not fit these GPUs as configured ({result.verdict.replace('_', ' ')}; "
        f"largest context that fits: {result.max_context or 'none'}): see gpuprov fit {model}"
    ]
