"""Property: whatever text a user's profile holds (description, sources, the model id, extra arguments,
the serving venv path, its name), `profiles`, `profiles show`, `plan --from` (table, --json, --diff) and
`render --out` print no control character but their own newlines, end with their own exit code (never a
traceback), and never print a secret of the environment they run in. The snapshot side of the same
promise is tests/unit/test_hostile_snapshot_property.py, whose runner and strategies this reuses."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.conftest import SNAPSHOTS
from tests.unit.test_hostile_snapshot_property import _control_characters, _run, hostile_text

SECRET = "sk-HOSTILE-test-secret-0123456789"

#: where hostile text goes in a profile extending the laptop profile (which serves vLLM with an API key)
FIELDS = ("description", "source", "model", "extra_arg", "venv", "name")


def _profile(field: str, text: str) -> tuple[str, dict[str, Any]]:
    data: dict[str, Any] = {"extends": "rtx4090-laptop", "description": "hostile test", "serving": {"vllm": {}}}
    name = "hostile"
    if field == "description":
        data["description"] = text
    elif field == "source":
        data["sources"] = [text]
    elif field == "model":
        data["serving"]["vllm"]["model"] = text
    elif field == "extra_arg":
        data["serving"]["vllm"]["extra_args"] = ["--max-num-seqs", text]
    elif field == "venv":
        data["serving"]["vllm"]["venv"] = "/opt/" + text
    else:
        name = text
    return name, data


@contextlib.contextmanager
def _environment(config: Path, state: Path) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(
        {
            "XDG_CONFIG_HOME": str(config),
            "GPUPROV_STATE_DIR": str(state),
            "VLLM_API_KEY": SECRET,
            "HF_TOKEN": SECRET,
            "OLLAMA_HOST": f"http://admin:{SECRET}@127.0.0.1:11434",
            "COLUMNS": "200",
        }
    )
    os.environ.pop("GPUPROV_NVML_REPLAY", None)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(FIELDS), hostile_text)
@example(field="model", text="\ud800")  # CI found it: a lone surrogate reached render's file write
def test_hostile_profile_text_never_reaches_the_terminal_and_no_secret_is_printed(field: str, text: str) -> None:
    name, data = _profile(field, text)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        profiles = base / "config/gpuprov/profiles"
        profiles.mkdir(parents=True)
        safe_name = name if name and "/" not in name and "\x00" not in name and len(name) < 200 else "hostile"
        try:
            (profiles / f"{safe_name}.yaml").write_text(yaml.safe_dump(data), encoding="utf-8", errors="strict")
        except (UnicodeEncodeError, OSError):
            return  # text no file can hold (lone surrogates in a name): nothing to read
        snap = str(SNAPSHOTS / "rtx4090-laptop.constructed.json")
        runs = (
            (["profiles"], {0, 1, 2}),  # 1: a profile in the list is invalid (listed with its reason)
            (["profiles", "show", safe_name], {0, 2}),
            (["plan", safe_name, "--from", snap], {0, 2, 3}),
            (["plan", safe_name, "--from", snap, "--json"], {0, 2, 3}),
            (["plan", safe_name, "--from", snap, "--diff"], {0, 2, 3}),
            (["render", safe_name, "--out", str(base / "tree"), "--from", snap], {0, 2, 3}),
            (["doctor", "--json", "--from", snap], {0, 1}),
        )
        with _environment(base / "config", base / "state"):
            for argv, codes in runs:
                code, out, err = _run(argv)
                assert code in codes, (argv, code, out[-500:], err[-500:])
                assert "Traceback" not in err
                assert _control_characters(out) == [], (argv, out[-2000:])
                assert _control_characters(err) == [], (argv, err[-2000:])
                assert SECRET not in out and SECRET not in err, argv
                if code == 2:
                    assert err.startswith("gpuprov: error: ") and err.count("\n") == 1, err[:500]
                elif "--json" in argv and code == 0:
                    json.loads(out)
        rendered = base / "tree"
        if rendered.exists():  # the files render writes for inspection hold a placeholder, never a real key
            for path in rendered.rglob("*"):
                if path.is_file():
                    assert SECRET not in path.read_text(errors="replace"), path
