"""Property: whatever text a snapshot holds in any of its text fields (values and names), `doctor` (table
and --json), `plan PROFILE --from`, `compat check --from` and `profiles --from` print no control character
but the newlines they write themselves, and end with their own exit code, never a traceback. In-process
(provision.cli.main), so a few dozen hostile snapshots take seconds."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import tempfile
import unicodedata
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provision.cli import main
from tests.conftest import SNAPSHOTS


def _base() -> dict[str, Any]:
    """A snapshot with at least one of everything that holds text."""
    data = json.loads((SNAPSHOTS / "rtx4090.constructed.json").read_text())
    data["note"] = "constructed"
    data["host"]["servers"] = [{"unit": "gpuprov-vllm.service", "engine": "vllm", "host": "0.0.0.0", "port": 8000}]
    data["driver"]["unavailable"] = {"nvml_version": "not_supported"}
    data["driver"]["nvml"]["message"] = "ok"
    gpu = data["gpus"][0]
    gpu["unavailable"] = {"serial": "not_supported", "ecc_enabled": "not_supported"}
    gpu["clock_event_reasons"] = ["gpu_idle", "sw_power_cap"]
    gpu["compute_mode"] = "default"
    data["cuda_toolkits"] = [{"nvcc": "/usr/local/cuda/bin/nvcc", "version": "12.8", "found_via": ["PATH"]}]
    data["python"]["interpreter"] = "/opt/venv/bin/python"
    data["python"]["packages"] = {
        "torch": {"name": "torch", "version": "2.7.1+cu128", "cuda_variant": "cu128"},
        "vllm": {"name": "vllm", "version": "0.10.1", "cuda_variant": None},
    }
    data["python"]["torch_cuda"] = "12.8"
    data["python"]["pynvml_providers"] = ["nvidia-ml-py"]
    data["engines"] = [{"name": "llama-server", "path": "/usr/local/bin/llama-server", "version": "b6000"}]
    data["env"] = {"CUDA_VISIBLE_DEVICES": "0", "HF_HOME": "/srv/hf"}
    return data


BASE = _base()


def _text_paths(value: Any, path: tuple = ()) -> list[tuple[str, tuple]]:
    """("value", path) for every string, ("key", path) for every name in an object of names (env, packages...)."""
    out: list[tuple[str, tuple]] = []
    if isinstance(value, str):
        out.append(("value", path))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _text_paths(item, (*path, i))
    elif isinstance(value, dict):
        named = path[-1:] in (("env",), ("packages",), ("unavailable",))
        for key, item in value.items():
            if named:
                out.append(("key", (*path, key)))
            out += _text_paths(item, (*path, key))
    return out


PATHS = _text_paths(BASE)
#: fields a snapshot checks the form of: hostile text there is refused (exit 2) before anything is shown
CHECKED = (
    "driver_version",
    "kernel_module_version",
    "nvml_library_version",
    "cuda_driver_version",
    "compute_capability",
    "origin",
)
FREE_PATHS = [p for p in PATHS if p[1][-1] not in CHECKED]

SPECIALS = [
    "\x1b[31m",
    "\x1b[2J",
    "\x1b]0;pwned\x07",
    "\x1b]8;;http://x\x1b\\",
    "\n",
    "\r",
    "\t",
    "\x00",
    "\x08",
    "\x7f",
    "\x9b",
    "\u202e",
    "\u2066",
    "\u200b",
    "\u2028",
    "\ufeff",
    "\U000e0041",
    "\ud800",
    "[bold]",
    "[/]",
    "[link=x]",
    "%s",
    "{}",
    "\n ERROR [gpu0] forged",
    "é",
    "日本",
    "🙂",
]
mixed = st.lists(st.one_of(st.sampled_from(SPECIALS), st.text(max_size=12)), max_size=8).map("".join)
hostile_text = st.one_of(mixed, mixed, mixed, st.sampled_from(["x" * 70_000, "y\x1b" * 2_500]))
#: mostly fields shown as they are; now and then one whose form is checked
edits = st.lists(
    st.tuples(
        st.one_of(st.sampled_from(FREE_PATHS), st.sampled_from(FREE_PATHS), st.sampled_from(PATHS)), hostile_text
    ),
    min_size=1,
    max_size=6,
)

#: what never reaches the terminal as itself (provision.console.printable's categories)
_HIDDEN = {"Cc", "Cf", "Cs", "Zl", "Zp"}


def _apply(data: dict[str, Any], kind: str, path: tuple, text: str) -> None:
    parent = data
    for key in path[:-1]:
        if isinstance(parent, dict) and key not in parent:
            return  # an earlier edit renamed it
        parent = parent[key]
    if kind == "value":
        parent[path[-1]] = text
    elif path[-1] in parent and text not in parent:
        parent[text] = parent.pop(path[-1])


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code: int | str | None = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code
    return (code if isinstance(code, int) else 1), out.getvalue(), err.getvalue()


def _control_characters(text: str) -> list[str]:
    return sorted({c for c in text if c != "\n" and unicodedata.category(c) in _HIDDEN})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits)
def test_hostile_snapshot_text_never_reaches_the_terminal(changes: list[tuple[tuple[str, tuple], str]]) -> None:
    data = copy.deepcopy(BASE)
    for (kind, path), text in changes:
        _apply(data, kind, path, text)
    with tempfile.TemporaryDirectory() as tmp:
        snap = Path(tmp) / "hostile.json"
        snap.write_text(json.dumps(data))
        for argv, codes in (
            (["doctor", "--from", str(snap)], {0, 1, 2}),
            (["doctor", "--json", "--from", str(snap)], {0, 1, 2}),
            (["plan", "rtx4090", "--force", "--from", str(snap)], {0, 2, 3}),
            (["compat", "check", "--from", str(snap)], {0, 1, 2, 3}),
            (["profiles", "--from", str(snap)], {0, 2}),
        ):
            code, out, err = _run(argv)
            assert code in codes, (argv, code, out[-500:], err[-500:])
            assert "Traceback" not in err
            assert _control_characters(out) == [], (argv, out[-2000:])
            assert _control_characters(err) == [], (argv, err[-2000:])
            if code == 2:
                assert err.startswith("gpuprov: error: ") and err.count("\n") == 1, err[:500]
            elif "--json" in argv:
                json.loads(out)
