"""The gpuprov.gpu collection's modules (playbooks/collections) document what they accept, and the
documentation is true.

``ansible-doc`` (the real one) must parse each module's DOCUMENTATION and RETURN; the options it
documents must be exactly the module's ``argument_spec`` (names, types, required, defaults, choices) and
its EXAMPLES must be YAML tasks that call the module with documented options only. A broken
DOCUMENTATION block is what made ansible-lint unable to resolve a module (syntax-check[unknown-module]).
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COLLECTIONS = ROOT / "playbooks" / "collections"
LIBRARY = COLLECTIONS / "ansible_collections/gpuprov/gpu/plugins/modules"
ANSIBLE_DOC = Path(sys.executable).parent / "ansible-doc"
MODULES = sorted(p.stem for p in LIBRARY.glob("gpuprov_*.py"))


def _argument_spec(path: Path) -> dict[str, dict[str, Any]]:
    """The literal ``argument_spec=`` given to AnsibleModule in the module's source."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "AnsibleModule":
            for kw in node.keywords:
                if kw.arg == "argument_spec":
                    return ast.literal_eval(kw.value)
    raise AssertionError(f"{path.name}: no AnsibleModule(argument_spec=...) literal")


def _doc(name: str) -> dict[str, Any]:
    proc = subprocess.run(
        [str(ANSIBLE_DOC), "-t", "module", "--json", f"gpuprov.gpu.{name}"],
        env={**os.environ, "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)[f"gpuprov.gpu.{name}"]


def test_every_module_is_covered() -> None:
    assert len(MODULES) >= 7, MODULES


@pytest.mark.parametrize("name", MODULES)
def test_documentation_matches_argument_spec(name: str) -> None:
    doc = _doc(name)
    options: dict[str, dict[str, Any]] = doc["doc"].get("options") or {}
    spec = _argument_spec(LIBRARY / f"{name}.py")
    assert set(options) == set(spec), f"{name}: documented {sorted(options)}, accepted {sorted(spec)}"
    for opt, arg in spec.items():
        documented = options[opt]
        assert documented.get("description"), f"{name}.{opt}: no description"
        assert documented.get("type", "str") == arg.get("type", "str"), f"{name}.{opt}: type"
        assert bool(documented.get("required", False)) == bool(arg.get("required", False)), f"{name}.{opt}: required"
        if "default" in arg and arg["default"] not in (None, {}, []):
            assert documented.get("default") == arg["default"], f"{name}.{opt}: default"
        if "choices" in arg:
            assert documented.get("choices") == arg["choices"], f"{name}.{opt}: choices"
        if "elements" in arg:
            assert documented.get("elements") == arg["elements"], f"{name}.{opt}: elements"
    assert doc["doc"].get("short_description"), name
    assert doc.get("return"), f"{name}: no RETURN"


@pytest.mark.parametrize("name", MODULES)
def test_examples_use_documented_options(name: str) -> None:
    doc = _doc(name)
    examples = yaml.safe_load(doc.get("examples") or "")
    assert isinstance(examples, list) and examples, f"{name}: no EXAMPLES"
    options = set(doc["doc"].get("options") or {})
    for task in examples:
        assert task.get("name"), f"{name}: an example task without a name"
        fqcn = f"gpuprov.gpu.{name}"
        assert fqcn in task, f"{name}: an example that does not call {fqcn}"
        args = task[fqcn] if task[fqcn] is not None else {}
        assert isinstance(args, dict), f"{name}: example arguments are not a mapping"
        assert set(args) <= options, f"{name}: example uses {sorted(set(args) - options)}"


def test_file_examples_render() -> None:
    """The templates gpuprov_file's examples name exist and render with the variables given there."""
    from provision.render import render

    examples = yaml.safe_load(_doc("gpuprov_file")["examples"])
    calls = [task["gpuprov.gpu.gpuprov_file"] or {} for task in examples]
    templated = [args for args in calls if "template" in args]
    assert templated
    for args in templated:
        assert render(args["template"], args.get("vars", {})).strip()
