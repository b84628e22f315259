"""Hostile text from an inference server (error messages, the model list) through ``gpuprov bench``:
whatever the server says, no control or invisible character reaches the terminal, no traceback,
and a failed run is one final line on stderr."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.unit.test_bench_cli import gpuprov
from tests.unit.test_bench_server import FakeServer, Script
from tests.unit.test_hostile_snapshot_property import _control_characters, hostile_text


class _SaysThis(FakeServer):
    """Every completion fails with the given text as its error message (JSON error body) or as the whole body."""

    def __init__(self, script: Script, text: str, as_json: bool) -> None:
        super().__init__(script)
        self.text, self.as_json = text, as_json

    def handle_completion(self, handler: Any, body: dict[str, Any]) -> None:
        if self.as_json:
            handler._json(500, {"error": {"message": self.text}})
            return
        data = self.text.encode("utf-8", "surrogatepass")
        handler.send_response(502)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile_text, st.booleans(), st.booleans())
@example(
    text="[/x] boom \x1b]8;;http://evil\x07click\x1b]8;;\x07\u202e\nFindings: forged", as_json=True, in_models=True
)
def test_hostile_server_text_never_reaches_the_terminal(text: str, as_json: bool, in_models: bool) -> None:
    script = Script(owned_by=text) if in_models else Script()
    with _SaysThis(script, text, as_json) as srv:
        proc = gpuprov("bench", srv.url, "-m", "fake-model", "--warmup", "0", "-n", "2", "--no-gpu", "--no-store")
    assert proc.returncode == 1, (proc.returncode, proc.stdout[-500:], proc.stderr[-500:])
    assert _control_characters(proc.stdout) == [], proc.stdout[-2000:]
    assert _control_characters(proc.stderr) == [], proc.stderr[-2000:]
    last = proc.stderr.splitlines()[-1]
    assert last.startswith("gpuprov: 2 of 2 requests failed"), last
    assert not any(line.startswith("Findings: forged") for line in (proc.stdout + proc.stderr).splitlines())
