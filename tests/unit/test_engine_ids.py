"""The engines' ids have one owner, :mod:`provision.engineflags`. No other module of the library (or of the
Ansible collection) writes the llama.cpp engine as a string of its own — ``"llama_cpp"``, ``"llama.cpp"``,
``"llama-cpp"``, ``"llamacpp"`` — it names the owner's constants; and every front-door spelling (the
profile's ``llama_cpp:``, ``gpuprov build llama-cpp``, ``fit --engine llama.cpp``, ``compat plan --engine
llama-cpp``) leads to the one id, and back to the spelling that front door shows."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from provision.engineflags import ENGINE_IDS, ENGINE_NAMES, ENGINE_WORDS, LLAMA_CPP_ENGINE, engine_id

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("provision", "playbooks/collections/ansible_collections/gpuprov/gpu/plugins")
OWNER = "provision/engineflags.py"
SPELLINGS = frozenset({"llama_cpp", "llama.cpp", "llama-cpp", "llamacpp"})
#: the same letters where they do not name the engine: (file, string) -> what they name
NOT_THE_ENGINE = {
    ("provision/prune/known.py", "llama_cpp"): "the import name of the llama-cpp-python package",
    ("provision/llama_build/source.py", "llama_cpp"): "the package's directory in an unpacked sdist",
    ("provision/pyenv.py", "llama_cpp"): "the package's directory in site-packages",
    ("provision/compat/matrix.py", "llama_cpp"): "a table of provision/data/compat.toml",
    ("provision/bench/serverinfo.py", "llamacpp"): "what llama-server answers as owned_by in /v1/models",
}


def engine_literals(root: Path) -> list[tuple[str, int, str]]:
    """(file, line, string) of every string constant under ``root`` that is exactly a spelling of the
    llama.cpp engine, outside the owner and the known other meanings."""
    found = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel == OWNER:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=rel)):
                if (
                    isinstance(node, ast.Constant)
                    and isinstance(node.value, str)
                    and node.value in SPELLINGS
                    and (rel, node.value) not in NOT_THE_ENGINE
                ):
                    found.append((rel, node.lineno, node.value))
    return found


def test_no_module_but_the_owner_spells_the_llama_cpp_engine() -> None:
    assert engine_literals(ROOT) == [], "use provision.engineflags' LLAMA_CPP_ENGINE, ENGINE_NAMES or ENGINE_WORDS"


def test_the_scan_sees_a_second_spelling(tmp_path: Path) -> None:
    module = tmp_path / "provision" / "serving" / "extra.py"
    module.parent.mkdir(parents=True)
    module.write_text('ENGINE = "llama-cpp"\nOTHER = {"llama.cpp": 1}\nNOTE = "llama.cpp server"\n', encoding="utf-8")
    assert engine_literals(tmp_path) == [
        ("provision/serving/extra.py", 1, "llama-cpp"),
        ("provision/serving/extra.py", 2, "llama.cpp"),
    ]


def test_the_other_meanings_are_still_there() -> None:
    """An entry of NOT_THE_ENGINE whose string is gone is removed from it (no stale exemption)."""
    for (rel, text), _why in NOT_THE_ENGINE.items():
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        assert any(isinstance(n, ast.Constant) and n.value == text for n in ast.walk(tree)), (rel, text)


def test_each_front_door_spelling_leads_to_the_one_id() -> None:
    assert LLAMA_CPP_ENGINE in ENGINE_IDS
    assert {engine_id(s) for s in SPELLINGS - {"llamacpp"}} == {LLAMA_CPP_ENGINE}
    assert (ENGINE_NAMES[LLAMA_CPP_ENGINE], ENGINE_WORDS[LLAMA_CPP_ENGINE]) == ("llama.cpp", "llama-cpp")


def test_the_profile_key_is_the_id() -> None:
    from provision.profiles.schema import _Where
    from provision.serving.section import parse_serving

    profile_section = {"llama_cpp": {"model": "/srv/m.gguf", "server": "/usr/bin/llama-server"}}
    section = parse_serving(profile_section, _Where("p.yaml")["serving"])
    assert section.engine == LLAMA_CPP_ENGINE


def test_compat_plan_takes_the_command_word_and_shows_it() -> None:
    from provision.compat.plan import plan
    from provision.compat.target import Target, apply_overrides

    result = plan(apply_overrides(Target(), gpu="GTX 1080 Ti", driver="550.54.14"), "llama-cpp")
    assert result.engine == LLAMA_CPP_ENGINE
    assert result.to_dict()["engine"] == "llama-cpp"
    assert result.constraints().startswith("# gpuprov compat plan --engine llama-cpp\n")
    assert result.uv_sources().startswith("# gpuprov compat plan --engine llama-cpp --format uv-sources\n")


def test_build_command_is_the_command_word() -> None:
    from provision.cli.build import build_app

    assert [c.name for c in build_app.registered_commands] == ["llama-cpp"]


@given(st.text(max_size=20))
def test_engine_id_is_an_id_or_none(text: str) -> None:
    found = engine_id(text)
    assert found is None or found in ENGINE_IDS
    if found is not None:
        assert text in (found, ENGINE_NAMES[found], ENGINE_WORDS[found])


def test_no_two_engines_share_a_spelling() -> None:
    spellings = [s for e in ENGINE_IDS for s in {e, ENGINE_NAMES[e], ENGINE_WORDS[e]}]
    assert len(spellings) == len(set(spellings))
    assert all(engine_id(s) is not None for s in spellings)
