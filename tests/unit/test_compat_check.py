"""compat check: the source facts of the matrix and the famous failures, table-driven."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from packaging.version import Version

from provision.cli import app
from provision.compat.matrix import load_matrix, runs_on
from provision.compat.target import Target, apply_overrides, parse_package_spec, target_from_snapshot
from provision.compat.verdict import check
from provision.errors import UsageError
from provision.snapshot import Snapshot

SNAPSHOTS = Path(__file__).parent.parent / "data" / "snapshots"


def what_if(**kw: object) -> Target:
    return apply_overrides(Target(), **kw)  # type: ignore[arg-type]


# -- source facts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("vllm", "torch", "xformers", "flashinfer"),
    [
        ("0.6.0", "2.4.0", "0.0.27.post2", None),
        ("0.6.4", "2.5.1", "0.0.28.post3", None),
        ("0.8.0", "2.6.0", "0.0.29.post2", None),
        ("0.9.0", "2.7.0", "0.0.30", None),
        ("0.10.1", "2.7.1", "0.0.31", "0.2.11"),
        ("0.10.2", "2.8.0", "0.0.32.post1", "0.3.0"),
        ("0.11.1", "2.9.0", "0.0.33.post1", "0.5.2"),
        ("0.14.0", "2.9.1", None, "0.5.3"),
        ("0.17.0", "2.10.0", None, "0.6.4"),
        ("0.20.0", "2.11.0", None, "0.6.8.post1"),
        ("0.27.0", "2.13.0", None, "0.6.16.post3"),
        ("0.33.0", "2.14.0", None, "0.7.2.post1"),
    ],
)
def test_vllm_pins(vllm: str, torch: str, xformers: str | None, flashinfer: str | None) -> None:
    rel = load_matrix().vllm(vllm)
    assert rel is not None
    assert (rel.torch, rel.xformers, rel.flashinfer) == (torch, xformers, flashinfer)
    assert rel.source.startswith("PyPI wheel METADATA: vllm-" + vllm)


@pytest.mark.parametrize(
    ("vllm", "cuda", "min_cc"),
    [
        ("0.6.0", "12.1", "7.0"),
        ("0.8.5", "12.4", "7.0"),
        ("0.9.0", "12.8", "7.0"),
        ("0.19.1", "12.9", "7.0"),
        ("0.20.0", "13.0", "7.5"),
    ],
)
def test_vllm_build_facts(vllm: str, cuda: str, min_cc: str) -> None:
    rel = load_matrix().vllm(vllm)
    assert rel is not None and rel.cuda == cuda
    assert rel.archs[0] == min_cc


@pytest.mark.parametrize(
    ("torch", "variant", "pypi_variant"),
    [
        ("2.4.0", "cu121", "cu121"),
        ("2.5.1", "cu124", "cu124"),
        ("2.7.1", "cu128", "cu126"),
        ("2.8.0", "cu129", "cu128"),
        ("2.11.0", "cu130", "cu130"),
        ("2.12.0", "cu132", "cu130"),
        ("2.15.0", "cu132", "cu132"),
    ],
)
def test_torch_variants(torch: str, variant: str, pypi_variant: str) -> None:
    m = load_matrix()
    assert m.torch_build(torch, variant) is not None
    pypi = m.torch_build(torch, None)
    assert pypi is not None and pypi.variant == pypi_variant


@pytest.mark.parametrize(
    ("torch", "variant", "cc", "runs"),
    [
        ("2.7.1", "cu126", "12.0", False),  # no Blackwell before cu128
        ("2.7.1", "cu128", "12.0", True),
        ("2.7.1", "cu128", "7.0", False),  # 2.7 cu128 dropped Volta
        ("2.8.0", "cu128", "7.0", True),  # ... 2.8 put it back
        ("2.11.0", "cu128", "7.0", False),  # ... 2.11 dropped it again
        ("2.8.0", "cu128", "6.1", False),  # Pascal gone from cu128+
        ("2.8.0", "cu126", "6.1", True),
        ("2.11.0", "cu130", "7.0", False),  # CUDA 13: sm_75 and newer
        ("2.4.0", "cu121", "8.9", True),  # sm_86 SASS runs on 8.9
        ("2.9.0", "cu129", "12.1", True),
    ],
)
def test_torch_arch_lists(torch: str, variant: str, cc: str, runs: bool) -> None:
    build = load_matrix().torch_build(torch, variant)
    assert build is not None
    assert runs_on(build.archs, cc) is runs


@pytest.mark.parametrize(
    ("cuda", "floor", "toolkit"),
    [
        ("11.8", "450.80.02", "520.61.05"),
        ("12.4", "525.60.13", "550.54.14"),
        ("12.8", "525.60.13", "570.26"),
        ("13.0", "580", "580.65.06"),
    ],
)
def test_driver_table(cuda: str, floor: str, toolkit: str) -> None:
    m = load_matrix()
    assert m.driver_floor(cuda) is not None and m.driver_floor(cuda)[0] == floor  # type: ignore[index]
    assert m.toolkit_driver(cuda) is not None and m.toolkit_driver(cuda)[0] == toolkit  # type: ignore[index]


def test_every_row_has_a_source() -> None:
    data = load_matrix().data
    rows = [
        *data["cuda"]["majors"],
        *data["cuda"]["toolkits"],
        *data["torch"]["releases"],
        *data["vllm_build"]["ranges"],
        *data["flashinfer"]["ranges"],
        *data["llama_cpp"]["wheels"],
        *data["vllm"]["releases"],
        *data["xformers"]["releases"],
        *data["flashinfer_pins"]["releases"],
    ]
    assert rows and all(str(r.get("source", "")).strip() for r in rows)
    assert set(data["archs"]) == set(data["archs_source"])


# -- the famous failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("case", "kw", "kind"),
    [
        ("torch cu12x on a 470 driver", dict(driver="470.256.02", packages=["torch==2.5.1+cu124"]), "torch_driver"),
        ("torch PyPI (cu126) on a 470 driver", dict(driver="470.256.02", packages=["torch==2.7.1"]), "torch_driver"),
        ("cu13 torch on a 570 driver", dict(driver="570.172.08", packages=["torch==2.11.0"]), "torch_driver"),
        ("Blackwell with torch without sm_120", dict(gpu="RTX 5090", packages=["torch==2.6.0"]), "torch_gpu"),
        ("Blackwell with a cu126 build", dict(gpu="RTX PRO 6000", packages=["torch==2.7.1"]), "torch_gpu"),
        ("Pascal with cu128 (dropped)", dict(gpu="GTX 1080 Ti", packages=["torch==2.8.0"]), "torch_gpu"),
        ("Volta with cu130", dict(gpu="V100", packages=["torch==2.11.0"]), "torch_gpu"),
        ("vLLM with the wrong torch", dict(packages=["torch==2.7.1", "vllm==0.10.2"]), "vllm_torch"),
        ("vLLM with the wrong xformers", dict(packages=["vllm==0.9.0", "xformers==0.0.31"]), "vllm_xformers"),
        (
            "vLLM with another flashinfer",
            dict(packages=["vllm[flashinfer]==0.10.1", "flashinfer-python==0.2.6.post1"]),
            "vllm_flashinfer",
        ),
        (
            "flashinfer built for another torch",
            dict(packages=["torch==2.6.0", "flashinfer-python==0.2.6.post1+cu128torch2.7"]),
            "flashinfer_torch",
        ),
        (
            "flashinfer AOT release for older torch",
            dict(packages=["torch==2.9.0", "flashinfer-python==0.2.8"]),
            "flashinfer_torch",
        ),
        ("xformers for another torch", dict(packages=["torch==2.8.0", "xformers==0.0.31"]), "xformers_torch"),
        ("vLLM below its minimum cc", dict(gpu="GTX 1080", packages=["vllm==0.10.1"]), "vllm_gpu"),
        ("vLLM 0.20 dropped Volta", dict(gpu="V100", packages=["vllm==0.20.0"]), "vllm_gpu"),
        ("vLLM < 0.9 on Blackwell", dict(gpu="RTX 5090", packages=["vllm==0.8.5"]), "vllm_gpu"),
        ("vLLM CUDA 13 on a 560 driver", dict(driver="560.35.03", packages=["vllm==0.20.0"]), "vllm_driver"),
        ("vLLM cu12 with a cu118 torch", dict(packages=["torch==2.7.1+cu118", "vllm==0.10.0"]), "vllm_torch_cuda"),
    ],
)
def test_famous_failures_are_incompatible(case: str, kw: dict[str, object], kind: str) -> None:
    report = check(what_if(**kw))
    assert report.verdict == "incompatible", case
    assert report.exit_code == 1
    problem = next(p for p in report.problems if p.kind == kind)
    assert problem.severity == "incompatible"
    assert problem.source and problem.fix and problem.reason


@pytest.mark.parametrize(
    "kw",
    [
        dict(driver="560.35.03", gpu="RTX 4090 Laptop", packages=["torch==2.7.1", "vllm==0.10.1"]),
        dict(
            driver="580.159.04",
            gpu="H100",
            packages=["torch==2.11.0", "vllm==0.20.0", "flashinfer-python==0.6.8.post1"],
        ),
        dict(driver="570.172.08", gpu="RTX 5090", packages=["torch==2.7.1+cu128", "vllm==0.10.0"]),
        dict(driver="535.54.03", gpu="V100", packages=["torch==2.8.0", "vllm==0.10.2", "xformers==0.0.32.post1"]),
        dict(driver="550.54.14", gpu="GTX 1080 Ti", packages=["torch==2.7.1+cu118"]),
        dict(driver="575.51.03", gpu="A100", packages=["torch==2.6.0", "flashinfer-python==0.2.3"]),
    ],
)
def test_working_combinations_are_ok(kw: dict[str, object]) -> None:
    report = check(what_if(**kw))
    assert report.verdict == "ok", [p.reason for p in report.problems]
    assert report.checked


def test_minor_version_compat_is_a_warning_not_a_failure() -> None:
    report = check(what_if(driver="560.35.03", packages=["torch==2.7.1+cu128"]))
    assert report.verdict == "ok"
    [warning] = report.problems
    assert warning.severity == "warning" and "570.26" in warning.fix


@pytest.mark.parametrize(
    "packages",
    [
        ["torch==2.3.1"],
        ["torch==2.99.0"],
        ["vllm==0.5.5"],
        ["vllm==0.35.0"],
        ["xformers==0.0.26"],
        ["flashinfer-python==0.8.0"],
        ["torch==2.7.1+cu121"],
    ],
)
def test_uncovered_versions_are_unknown_never_ok(packages: list[str]) -> None:
    report = check(what_if(packages=packages))
    assert report.verdict == "unknown"
    assert report.exit_code == 3


def test_incompatible_wins_over_unknown() -> None:
    report = check(what_if(driver="470.1", packages=["torch==2.7.1", "vllm==0.99"]))
    assert report.verdict == "incompatible"


def test_fix_names_the_nearest_working_build() -> None:
    report = check(what_if(gpu="GTX 1080 Ti", packages=["torch==2.9.0"]))
    assert report.problems[0].fix == "install torch==2.9.0+cu126 from https://download.pytorch.org/whl/cu126"
    report = check(what_if(driver="470.256.02", packages=["torch==2.7.1"]))
    assert "torch==2.7.1+cu118" in report.problems[0].fix


def test_fix_for_a_new_gpu_is_a_build_the_driver_can_run() -> None:
    """RTX 5090 on driver 575 (CUDA 12.9): the newest torch with sm_120 that a CUDA 12 driver starts, not a cu13."""
    report = check(what_if(gpu="RTX 5090", driver="575.64.03", packages=["torch==2.6.0+cu124"]))
    fix = next(p.fix for p in report.problems if p.kind == "torch_gpu")
    assert "+cu12" in fix or "torch==2.10" in fix, fix
    assert "cu13" not in fix
    proposed = fix.split("install ", 1)[1].split()[0]
    fixed = check(what_if(gpu="RTX 5090", driver="575.64.03", packages=[proposed]))
    assert not [p for p in fixed.problems if p.kind in ("torch_gpu", "torch_driver") and p.severity == "incompatible"]
    assert fixed.verdict == "ok", [p.reason for p in fixed.problems]


# -- snapshots and overrides ----------------------------------------------------------------------------


def test_snapshot_of_the_rtx4090_laptop() -> None:
    snap = Snapshot.load(SNAPSHOTS / "rtx4090-laptop.constructed.json")
    target = target_from_snapshot(snap)
    assert target.driver == "560.35.03" and target.cc_list() == ["8.9"]
    report = check(target)
    # vllm 0.10.1's [flashinfer] extra pins 0.2.11; the snapshot has 0.2.8 but records no extras: the pin
    # under the extra is not judged (pip and uv do not enforce it), and the report says so; the driver runs
    # the CUDA 12.8 builds through minor-version compatibility only (warnings)
    assert report.verdict == "ok"
    assert {(p.kind, p.severity) for p in report.problems} == {("torch_driver", "warning"), ("vllm_driver", "warning")}
    assert any("only under its [flashinfer] extra, not asked for" in line for line in report.checked)
    assert check(what_if(packages=["vllm==0.10.2", "flashinfer-python==0.3.1"])).verdict == "ok"
    with_extra = apply_overrides(target, packages=["vllm[flashinfer]==0.10.1"])
    assert "vllm_flashinfer" in {p.kind for p in check(with_extra).problems}
    fixed = apply_overrides(
        target, packages=["vllm[flashinfer]==0.10.1", "flashinfer-python==0.2.11"], driver="570.172.08"
    )
    assert check(fixed).verdict == "ok"


def test_flags_override_the_snapshot() -> None:
    snap = Snapshot.load(SNAPSHOTS / "rtx4090-laptop.constructed.json")
    target = apply_overrides(target_from_snapshot(snap), gpu="GTX 1080", driver="470.1")
    assert target.cc_list() == ["6.1"] and target.driver == "470.1"


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        (dict(driver="latest"), "--driver"),
        (dict(cc="eight"), "--cc"),
        (dict(gpu="Radeon 7900"), "--gpu"),
        (dict(gpu="RTX 4090", cc="8.9"), "--gpu and --cc"),
        (dict(packages=["torch>=2.7"]), "exact version"),
        (dict(packages=["torch==="]), "is not a version"),
        (dict(packages=["not a spec at all"]), "not a package spec"),
        (dict(packages=["numpy==1.26.4"]), "does not track numpy"),
        (dict(packages=["torch==2.7.1", "torch==2.8.0"]), "names torch twice"),
    ],
)
def test_bad_usage(kw: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        what_if(**kw)


@given(st.text(max_size=60))
def test_package_spec_parser_gives_usage_error_or_a_pair(text: str) -> None:
    try:
        name, version, extras = parse_package_spec(text)
    except UsageError as exc:
        assert "\n" not in str(exc)
    else:
        assert name and version
        assert all(extras)


# -- CLI -------------------------------------------------------------------------------------------------


def _run(args: list[str]) -> tuple[int, str]:
    from typer.testing import CliRunner

    from provision.cli import _register

    _register([])  # no command named: every command module
    result = CliRunner().invoke(app, args)
    if isinstance(result.exception, UsageError):
        return result.exception.exit_code, str(result.exception)
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["compat", "check", "--with", "torch==2.7.1", "--with", "vllm==0.10.1"], 0),
        (["compat", "check", "--driver", "470.1", "--with", "torch==2.7.1+cu128"], 1),
        (["compat", "check", "--with", "vllm==0.99.0"], 3),
        (["compat", "check", "--with", "torch>=2"], 2),
        (["compat", "check", "--gpu", "no such gpu"], 2),
    ],
)
def test_cli_exit_codes(args: list[str], code: int) -> None:
    assert _run(args)[0] == code


def test_cli_json() -> None:
    code, out = _run(["compat", "check", "--json", "--gpu", "RTX 5090", "--with", "torch==2.6.0"])
    assert code == 1
    data = json.loads(out)
    assert data["verdict"] == "incompatible"
    assert {"pair", "reason", "source", "fix"} <= set(data["problems"][0])


def test_cli_from_snapshot() -> None:
    code, out = _run(
        [
            "compat",
            "check",
            "--json",
            "--from",
            str(SNAPSHOTS / "rtx4090-laptop.constructed.json"),
            "--with",
            "flashinfer-python==0.2.11",
        ]
    )
    assert code == 0, out
    assert json.loads(out)["verdict"] == "ok"


# -- never guessed as ok ----------------------------------------------------------------------------


def test_nothing_to_check_is_not_ok() -> None:
    report = check(Target())
    assert report.verdict == "unknown" and report.exit_code == 3
    assert report.skipped and "nothing to check" in report.skipped[0]
    # a package, but neither a driver nor a GPU to hold it against
    report = check(what_if(packages=["torch==2.7.1"]))
    assert report.verdict == "unknown" and not report.checked
    assert any("no driver known" in s for s in report.skipped)


def test_a_rocm_torch_is_unknown_not_a_cuda_build() -> None:
    report = check(what_if(gpu="RTX 4090", driver="570.172.08", packages=["torch==2.7.1+rocm6.2"]))
    assert report.verdict == "unknown"
    assert "not a CUDA build" in report.problems[0].reason


@pytest.mark.parametrize(
    ("kw", "verdict", "kind"),
    [
        # covered, GPU with prebuilt wheels: ok (the build's archs are gpuprov build's business)
        (dict(gpu="RTX 4090", packages=["llama-cpp-python==0.3.16"]), "ok", None),
        # newer than the matrix: unknown, never guessed
        (dict(gpu="RTX 4090", packages=["llama-cpp-python==9.9.9"]), "unknown", "llama_cpp_unknown"),
        # Maxwell (5.0): older than every prebuilt wheel's archs (PTX JIT covers only newer GPUs): a warning
        (dict(cc="5.0", packages=["llama-cpp-python==0.3.16"]), "ok", "llama_cpp_gpu"),
    ],
)
def test_llama_cpp_python(kw: dict[str, object], verdict: str, kind: str | None) -> None:
    report = check(what_if(**kw))
    assert report.verdict == verdict, [p.reason for p in report.problems]
    assert {p.kind for p in report.problems} == ({kind} if kind else set())
    if verdict == "ok":
        assert any(pair.startswith("llama-cpp-python") for pair in report.checked)


def test_llama_cpp_cpu_build_on_a_gpu_host_is_incompatible() -> None:
    snap = Snapshot.load(SNAPSHOTS / "rtx4090.constructed.json")
    target = target_from_snapshot(snap)
    target.packages["llama-cpp-python"] = "0.3.16"
    target.llama_cpp_cuda = False
    report = check(target)
    assert "llama_cpp_cpu" in {p.kind for p in report.problems}
    assert report.verdict == "incompatible"
    # a --with version says nothing about the build: the snapshot's CPU build no longer applies
    assert "llama_cpp_cpu" not in {
        p.kind for p in check(apply_overrides(target, packages=["llama-cpp-python==0.3.16"])).problems
    }


def test_flashinfer_release_metadata_feeds_the_check() -> None:
    """flashinfer-python 0.7.1+ require torch>=2.8 only under their [sm107] extra (0.7.2+: torch>=2.12.0 under
    [b12x]): pip and uv install 0.7.4 with torch 2.7.1, so gpuprov must not call it incompatible."""
    m = load_matrix()
    assert m.flashinfer_published("0.7.4") == (True, None)
    report = check(what_if(gpu="RTX 4090", driver="580.65.06", packages=["torch==2.7.1", "flashinfer-python==0.7.4"]))
    assert report.verdict == "ok", [p.reason for p in report.problems]
    asked = what_if(gpu="RTX 4090", driver="580.65.06", packages=["torch==2.7.1", "flashinfer-python[sm107]==0.7.4"])
    problems = check(asked).problems
    assert [p.kind for p in problems] == ["flashinfer_torch"] and "[sm107] extra" in problems[0].reason
    b12x = what_if(gpu="RTX 4090", driver="580.65.06", packages=["torch==2.11.0", "flashinfer-python[b12x]==0.7.4"])
    assert "torch>=2.12.0" in check(b12x).problems[0].reason
    assert check(what_if(packages=["torch==2.12.0", "flashinfer-python[b12x,sm107]==0.7.4"])).verdict == "ok"
    # a version inside a range but never published (0.7.3 was skipped) is unknown
    report = check(what_if(gpu="RTX 4090", driver="580.65.06", packages=["torch==2.9.0", "flashinfer-python==0.7.3"]))
    assert report.verdict == "unknown" and report.problems[0].kind == "flashinfer_unknown"


def test_every_vllm_row_has_build_facts() -> None:
    """A refreshed [vllm] row without a [vllm_build] range would be dropped silently: forbid it."""
    import tomllib

    data = tomllib.loads((Path(__file__).parents[2] / "provision" / "data" / "compat.toml").read_text())
    m = load_matrix()
    missing = [r["version"] for r in data["vllm"]["releases"] if r["version"] not in m.vllm_releases]
    assert not missing, f"add a [vllm_build] range covering {missing}"


def test_every_pin_names_a_row_the_matrix_has() -> None:
    """Every vLLM row's torch / xformers / flashinfer pin is itself covered: check can follow it."""
    m = load_matrix()
    for rel in m.vllm_releases.values():
        assert rel.torch in m.torch_versions, (rel.version, rel.torch)
        assert rel.xformers is None or m.xformers(rel.xformers) is not None, (rel.version, rel.xformers)
        assert rel.flashinfer is None or m.flashinfer(rel.flashinfer) is not None, (rel.version, rel.flashinfer)
        assert m.torch_variants(rel.torch), rel.version
        if rel.xformers:  # and the xformers it pins is built for the torch it pins
            assert Version(rel.torch) in m.xformers(rel.xformers).torch, (rel.version, rel.xformers)


def test_a_vllm_whose_required_pin_is_not_on_the_index_cannot_be_installed() -> None:
    """vLLM 0.34.0 requires flashinfer-python==0.7.3, never published: `uv pip compile vllm==0.34.0` fails."""
    report = check(what_if(packages=["vllm==0.34.0", "torch==2.14.0"]))
    assert report.verdict == "incompatible"
    (problem,) = report.problems
    assert problem.kind == "vllm_unresolvable" and "flashinfer-python==0.7.3, which is not on PyPI" in problem.reason
    assert problem.fix == "install vllm==0.33.0 (the newest installable vLLM for torch 2.14.0)"
    # with a flashinfer-python given, the pair itself is judged (0.7.3 is not a release the matrix has read)
    given = check(what_if(packages=["vllm==0.34.0", "flashinfer-python==0.7.3"]))
    assert [p.kind for p in given.problems] == ["flashinfer_unknown"]
