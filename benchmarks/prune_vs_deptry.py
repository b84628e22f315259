"""``gpuprov prune`` against deptry: verdicts and wall time on the test corpus and on real projects.

    python3 -m uv run python benchmarks/prune_vs_deptry.py [--real NAME==VER ...] [--repeat N] [--json OUT]

* corpus: each project under tests/data/prune/projects with its environment written into a real
  ``uv venv`` (tests/data/prune/sitebuild.py);
* real projects: their source from the PyPI sdist (``pip download --no-deps --no-binary :all:``),
  the released wheel and its dependencies installed into a fresh ``uv venv`` (needs PyPI).

deptry has no ``--python``: it maps imports through the interpreter it runs in, so it runs from
gpuprov's environment with the target's site-packages appended to ``sys.path`` (its own packages
stay visible to it: noted where that matters). deptry's ``DEP002`` (unused) is compared with prune's
``unused`` status and ``removable`` flag; each disagreement is printed with prune's reason.
Times are the median of ``--repeat`` runs of each command line, wall clock, cold processes. prune is
timed twice: a first run (an empty cache directory each time: no scan cache, no cached metadata of
the target interpreter) and a re-run on the unchanged tree (the cache a first run left), with
``GPUPROV_PRUNE_CACHE`` pointing at a throw-away directory; the re-run's JSON must equal the first
run's. The text re-run (``txt/d``: the table as a person sees it; deptry prints its text too) is
timed after one untimed text run has kept the table. The runs alternate prune and deptry so load on
a shared machine falls on both; the ratios are prune / deptry.

``--work DIR`` keeps the downloaded sources and venvs there (reused when present).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "prune"
BIN = Path(sys.executable).parent
#: sizeable projects with their optional extras installed, so every declared dependency is there;
#: pretalx is a Django application (INSTALLED_APPS, MIDDLEWARE, LOGGING in its settings)
DEFAULT_REAL = (
    "httpx[brotli,cli,http2,socks,zstd]==0.28.1",
    "starlette[full]==0.41.3",
    "flask[async,dotenv]==3.1.0",
    "fastapi[all]==0.115.6",
    "pretalx==2025.2.2",
)


def _sitebuild():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("prune_sitebuild_bench", DATA / "sitebuild.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def uv(*args: str, cwd: Path | None = None) -> None:
    subprocess.run([sys.executable, "-m", "uv", *args], cwd=cwd, check=True, capture_output=True, text=True)


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def timed(
    cmd: list[str], cwd: Path, env: dict[str, str] | None, repeat: int
) -> tuple[float, subprocess.CompletedProcess[str]]:
    times = []
    proc = None
    for _ in range(repeat):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False)
        times.append(time.perf_counter() - start)
    assert proc is not None
    return statistics.median(times), proc


def run_prune(project: Path, python: Path, cache: Path, cold: bool, text: bool = False) -> tuple[float, dict | str]:
    """One timed prune run (``--json`` unless ``text``); ``cold``: with an empty cache directory."""
    if cold:
        shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "GPUPROV_PRUNE_CACHE": str(cache)}
    mode = [] if text else ["--json"]
    seconds, proc = timed(
        [str(BIN / "gpuprov"), "prune", str(project), "--python", str(python), *mode], project, env, 1
    )
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"gpuprov prune failed on {project}: {proc.stderr.strip()}")
    return seconds, proc.stdout if text else json.loads(proc.stdout)


def measure(project: Path, venv: Path, repeat: int, work: Path, name: str) -> tuple[dict, list[dict], dict]:
    """prune first run, prune re-run and deptry, interleaved ``repeat`` times: medians."""
    cache = work / "cache" / name
    first, again, again_text, dep_t = [], [], [], []
    prune = deptry_out = None
    python = venv / "bin" / "python"
    for _ in range(repeat):
        t, prune = run_prune(project, python, cache, cold=True)
        first.append(t)
        t, served = run_prune(project, python, cache, cold=False)
        again.append(t)
        if served != prune:  # the re-run is served from the caches: it must say exactly what the first run said
            raise RuntimeError(f"{name}: the cached re-run's report differs from the first run's")
        _, drawn = run_prune(project, python, cache, cold=False, text=True)  # draws the table and keeps it
        t, kept = run_prune(project, python, cache, cold=False, text=True)
        again_text.append(t)
        if kept != drawn:
            raise RuntimeError(f"{name}: the kept table differs from the drawn one")
        t, deptry_out = run_deptry(project, venv, 1, work / f"deptry-{name}.json")
        dep_t.append(t)
    assert prune is not None and deptry_out is not None
    times = {
        "first": statistics.median(first),
        "rerun": statistics.median(again),
        "rerun_text": statistics.median(again_text),
        "deptry": statistics.median(dep_t),
    }
    return prune, deptry_out, times


def run_deptry(project: Path, venv: Path, repeat: int, out: Path) -> tuple[float, list[dict]]:
    # the target's site-packages goes last on sys.path, so deptry's own click etc. still import
    launcher = (
        f"import sys; sys.path.append({str(site_packages(venv))!r}); sys.argv[0] = 'deptry'; "
        "from deptry.cli import deptry; deptry()"
    )
    seconds, proc = timed([sys.executable, "-c", launcher, ".", "--no-ansi", "-o", str(out)], project, None, repeat)
    if not out.exists():
        raise RuntimeError(f"deptry failed on {project}: {proc.stderr.strip()[-500:]}")
    return seconds, json.loads(out.read_text())


def compare(name: str, prune: dict, deptry: list[dict], times: dict) -> dict:
    canon = lambda s: s.lower().replace("_", "-").replace(".", "-")  # noqa: E731
    dep_unused = {canon(v["module"]) for v in deptry if v["error"]["code"] == "DEP002"}
    dep_missing = sorted({v["module"] for v in deptry if v["error"]["code"] == "DEP001"})
    ours = {canon(d["name"]): d for d in prune["dependencies"]}
    unused = {k for k, d in ours.items() if d["status"] == "unused"}
    removable = {k for k, d in ours.items() if d["removable"]}
    disagreements = []
    for key in sorted(dep_unused | unused | removable):
        d = ours.get(key)
        deptry_says = "unused" if key in dep_unused else "-"
        prune_says = "not declared" if d is None else ("removable" if d["removable"] else d["status"])
        if (key in dep_unused) != (key in removable):
            why = (
                ""
                if d is None
                else (d["reason"] or (f"used at {d['used_at']} ({d['use_kind']})" if d["used_at"] else ""))
            )
            disagreements.append(
                {
                    "dependency": key,
                    "deptry": deptry_says,
                    "prune": prune_says,
                    "prune_reason": why,
                    "groups": d["groups"] if d else [],
                }
            )
    return {
        "project": name,
        "declared": len(ours),
        "deptry_unused": sorted(dep_unused),
        "deptry_missing": dep_missing,
        "prune_unused": sorted(unused),
        "prune_removable": sorted(removable),
        "prune_unknown": sorted(k for k, d in ours.items() if d["status"] == "unknown"),
        "disagreements": disagreements,
        "files_scanned": prune["files_scanned"],
        "prune_s": round(times["first"], 3),
        "prune_rerun_s": round(times["rerun"], 3),
        "deptry_s": round(times["deptry"], 3),
        "first_ratio": round(times["first"] / times["deptry"], 2),
        "rerun_ratio": round(times["rerun"] / times["deptry"], 2),
        "prune_rerun_text_s": round(times["rerun_text"], 3),
        "rerun_text_ratio": round(times["rerun_text"] / times["deptry"], 2),
    }


def corpus(work: Path, repeat: int) -> list[dict]:
    sb = _sitebuild()
    results = []
    for project in sorted(p for p in (DATA / "projects").iterdir() if p.is_dir()):
        copy = work / "corpus" / project.name
        shutil.copytree(project, copy)
        venv = work / "venvs" / project.name
        uv("venv", "-q", "--python", sys.executable, str(venv))
        sb.build_site(site_packages(venv), "corpus", sb.project_dists(project.name))
        prune, dep, times = measure(copy, venv, repeat, work, project.name)
        results.append(compare(f"corpus/{project.name}", prune, dep, times))
    return results


def real(work: Path, spec: str, repeat: int) -> dict:
    """``spec`` is ``NAME[EXTRAS]==VER``: the sdist of NAME==VER, the wheel installed with EXTRAS."""
    name, _, version = spec.partition("==")
    name = name.split("[")[0]
    dl = work / "sdists" / name
    src = work / "src" / name
    venv = work / "venvs" / name
    if not (venv / "bin" / "python").exists():
        pip = getattr(sys, "_base_executable", sys.executable)  # the base interpreter has pip; the venv may not
        download = [pip, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:", "--dest", str(dl)]
        subprocess.run([*download, f"{name}=={version}"], check=True, capture_output=True, text=True)
        archive = next(dl.iterdir())
        shutil.rmtree(src, ignore_errors=True)
        src.mkdir(parents=True)
        if archive.suffix == ".zip":
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(src)
        else:
            with tarfile.open(archive) as tf:
                tf.extractall(src, filter="data")
        uv("venv", "-q", "--python", sys.executable, str(venv))
        uv("pip", "install", "-q", "--python", str(venv / "bin" / "python"), spec)
    project = next(p for p in src.iterdir() if p.is_dir())
    prune, dep, times = measure(project, venv, repeat, work, name)
    result = compare(f"{spec} (sdist)", prune, dep, times)
    result["python_files"] = sum(1 for _ in project.rglob("*.py"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--real", nargs="*", default=list(DEFAULT_REAL), help="NAME==VER sdists to compare on")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--no-corpus", action="store_true")
    parser.add_argument("--work", type=Path, help="keep sources and venvs here (reused when present)")
    args = parser.parse_args()
    # both tools start from byte-compiled modules: where PYTHONDONTWRITEBYTECODE is set (this machine),
    # a module edited since its .pyc was written would be compiled again on every start
    import deptry

    for package in (ROOT / "provision", Path(deptry.__file__).parent):
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(package)], check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="prune-bench-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        results = [] if args.no_corpus else corpus(Path(tmp), args.repeat)
        for spec in args.real:
            results.append(real(work, spec, args.repeat))
    head = f"{'project':52} {'decl':>4} {'files':>5} {'first s':>8} {'rerun s':>8} {'deptry s':>8}"
    head += f" {'first/d':>7} {'rerun/d':>7} {'txt/d':>5}"
    print(head + "  removable (prune) | unused (deptry)")
    for r in results:
        row = f"{r['project']:52} {r['declared']:>4} {r['files_scanned']:>5} {r['prune_s']:>8.3f} "
        row += f"{r['prune_rerun_s']:>8.3f} {r['deptry_s']:>8.3f} {r['first_ratio']:>7.2f} {r['rerun_ratio']:>7.2f}"
        row += f" {r['rerun_text_ratio']:>5.2f}"
        print(f"{row}  {','.join(r['prune_removable']) or '-'} | {','.join(r['deptry_unused']) or '-'}")
        for d in r["disagreements"]:
            print(f"    {d['dependency']}: deptry={d['deptry']} prune={d['prune']} {d['groups']} — {d['prune_reason']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
