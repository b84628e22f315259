"""`gpuprov apply`'s progress: the tasks ansible-playbook starts and the phases gpuprov_stack reports reach
the CLI while the run goes on (GPUPROV_PROGRESS_FILE), in order, each once; torn or foreign lines are skipped."""

from __future__ import annotations

import json
import sys
import time

from provision.ansiblerun import _run_with_progress

WRITER = r"""
import json, os, sys, time
path = os.environ["GPUPROV_PROGRESS_FILE"]
events = [{"task": "Compute what the profile asks for"}, {"task": "Ensure the environment"},
          {"phase": "create the environment"}, {"phase": "install vllm, torch"}, "not json", {"other": 1},
          {"task": "Ensure the server's files"}]
for e in events:
    with open(path, "a") as fh:
        if isinstance(e, str):
            fh.write(e + "\n")
        else:
            text = json.dumps(e) + "\n"
            fh.write(text[:5]); fh.flush(); time.sleep(0.05); fh.write(text[5:])  # a line written in two parts
    time.sleep(0.1)
print("done")
"""


def test_progress_lines_arrive_in_order_once_while_the_run_goes_on(tmp_path):
    seen: list[tuple[float, str]] = []
    environ = {"GPUPROV_PROGRESS_FILE": str(tmp_path / "progress.jsonl"), "PATH": "/usr/bin:/bin"}
    start = time.monotonic()
    proc = _run_with_progress(
        [sys.executable, "-c", WRITER], environ, lambda line: seen.append((time.monotonic(), line))
    )
    end = time.monotonic()
    assert proc.returncode == 0 and proc.stdout.strip() == "done"
    assert [line for _, line in seen] == [
        "Compute what the profile asks for",
        "Ensure the environment",
        "  create the environment",
        "  install vllm, torch",
        "Ensure the server's files",
    ]
    assert seen[0][0] < end - 0.3  # the first came while the command still ran, not after it
    assert start < seen[0][0]


def test_without_a_progress_callback_nothing_is_followed(tmp_path):
    proc = _run_with_progress([sys.executable, "-c", "print('x')"], {"PATH": "/usr/bin:/bin"}, None)
    assert proc.stdout == "x\n"
    assert not (tmp_path / "progress.jsonl").exists()


def test_the_callback_writes_task_starts(tmp_path, monkeypatch):
    """The results callback appends one JSON line per task start to GPUPROV_PROGRESS_FILE."""
    import importlib.util
    from pathlib import Path

    import provision

    path = (
        Path(provision.__file__).parents[1]
        / "playbooks/collections/ansible_collections/gpuprov/gpu/plugins/callback/gpuprov_results.py"
    )
    spec = importlib.util.spec_from_file_location("gpuprov_results_cb", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("GPUPROV_PROGRESS_FILE", str(tmp_path / "p.jsonl"))
    cb = module.CallbackModule()

    class Task:
        def __init__(self, name: str, action: str) -> None:
            self.name, self.action = name, action

        def get_name(self) -> str:
            return self.name

    cb.v2_playbook_on_task_start(Task("Ensure the environment", "gpuprov.gpu.gpuprov_stack"), False)
    cb.v2_playbook_on_task_start(Task("include", "ansible.builtin.include_tasks"), False)
    lines = (tmp_path / "p.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [{"task": "Ensure the environment"}]
