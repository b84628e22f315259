"""``gpuprov bench`` against an independent load tester (NVIDIA's aiperf) on the same server.

Two questions, each answered with medians of ``--repeats`` runs, the two tools alternated:

1. Accuracy: the test server of the suite (``tests/unit/test_bench_server.py``, in its own process)
   with an exact schedule — TTFT 200 ms, 20 ms between tokens, 64 tokens — so every figure has a
   known truth. For each concurrency: each tool's error against it, per metric.
2. Client speed: the same server with no delays and 4 tokens a request; the most requests a second
   each client drives at concurrency 1 to 256 (the server is the same for both: a lower bound of each
   client's own limit, and a fair ratio).

aiperf is installed by this script in a virtual environment of its own (``python3 -m uv``; PyPI is
the only thing it needs), with a local word-level tokenizer (aiperf needs one to build prompts and
there is no network to fetch one): it counts tokens from the server's usage
(``--use-server-token-count``), as gpuprov does.

    .venv/bin/python benchmarks/bench_vs_independent.py [--repeats 3] [--out benchmarks/bench_vs_independent.md]

Prints the tables and writes them (Markdown) with the raw figures (JSON next to it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.unit.test_bench_server import Script, ServerProcess  # noqa: E402

AIPERF_VERSION = "0.13.0"
TTFT_S, ITL_S, TOKENS = 0.2, 0.02, 64
LATENCY_S = TTFT_S + (TOKENS - 1) * ITL_S
ACCURACY_LEVELS = {1: 8, 16: 64, 64: 256}  # concurrency -> requests (4 waves past 1)
RATE_LEVELS = (1, 16, 64, 256)
RATE_REQUESTS = 2000
RATE_TOKENS = 4

#: metric -> (gpuprov JSON path, aiperf JSON (metric, stat), truth as a function of concurrency)
METRICS: dict[str, tuple[tuple[str, str | None], tuple[str, str], Any]] = {
    "TTFT p50 ms": (("ttft_ms", "p50"), ("time_to_first_token", "p50"), lambda c: TTFT_S * 1000),
    "ITL p50 ms (between events)": (("itl_ms", "p50"), ("inter_chunk_latency", "p50"), lambda c: ITL_S * 1000),
    "TPOT p50 ms": (("tpot_ms", "p50"), ("inter_token_latency", "p50"), lambda c: ITL_S * 1000),
    "latency p50 ms": (("latency_ms", "p50"), ("request_latency", "p50"), lambda c: LATENCY_S * 1000),
    "output tok/s": (
        ("output_tokens_per_s", None),
        ("output_token_throughput", "avg"),
        lambda c: c * TOKENS / LATENCY_S,
    ),
}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gpuprov-benchmarks"


def aiperf_env() -> tuple[Path, Path]:
    """aiperf's own virtual environment and a local tokenizer; made once, reused."""
    venv = cache_dir() / f"aiperf-{AIPERF_VERSION}"
    aiperf = venv / "bin" / "aiperf"
    if not aiperf.exists():
        uv = [sys.executable, "-m", "uv"] if shutil.which("uv") is None else ["uv"]
        subprocess.run([*uv, "venv", "-q", "--allow-existing", "--python", "3.11", str(venv)], check=True)
        # --python: the new environment, never the interpreter that runs uv
        subprocess.run(
            [*uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), f"aiperf=={AIPERF_VERSION}"],
            check=True,
        )
    tokenizer = cache_dir() / "word-tokenizer"
    if not (tokenizer / "tokenizer.json").exists():
        tokenizer.mkdir(parents=True, exist_ok=True)
        code = (
            "import json,sys; from tokenizers import Tokenizer, models, pre_tokenizers, decoders; d=sys.argv[1];"
            "t=Tokenizer(models.WordLevel(vocab={'[UNK]':0,'tok':1}, unk_token='[UNK]'));"
            "t.pre_tokenizer=pre_tokenizers.WhitespaceSplit(); t.decoder=decoders.WordPiece();"
            "t.save(d+'/tokenizer.json');"
            "json.dump({'tokenizer_class':'PreTrainedTokenizerFast','unk_token':'[UNK]','model_max_length':10**6},"
            "open(d+'/tokenizer_config.json','w'))"
        )
        subprocess.run([str(venv / "bin" / "python"), "-c", code, str(tokenizer)], check=True)
    return aiperf, tokenizer


def run_gpuprov(url: str, concurrency: int, requests: int, max_tokens: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k != "GPUPROV_NVML_REPLAY"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "provision",
            "bench",
            url,
            "-m",
            "fake-model",
            "-c",
            str(concurrency),
            "-n",
            str(requests),
            "--max-tokens",
            str(max_tokens),
            "--prompt-tokens",
            "32",
            "--no-gpu",
            "--no-store",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"gpuprov bench failed ({proc.returncode}): {proc.stderr[-2000:]}")
    level = json.loads(proc.stdout)["levels"][0]
    return level


def run_aiperf(aiperf: Path, tokenizer: Path, url: str, concurrency: int, requests: int, tokens: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="aiperf-") as out:
        proc = subprocess.run(
            [
                str(aiperf),
                "profile",
                "--model",
                "fake-model",
                "--url",
                url,
                "--endpoint-type",
                "chat",
                "--streaming",
                "--concurrency",
                str(concurrency),
                "--request-count",
                str(requests),
                "--warmup-request-count",
                "1",
                "--tokenizer",
                str(tokenizer),
                "--use-server-token-count",
                "--prompt-input-tokens-mean",
                "32",
                "--prompt-output-tokens-mean",
                str(tokens),
                "--artifact-dir",
                out,
                "--ui-type",
                "none",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=out,
        )
        result = Path(out) / "profile_export_aiperf.json"
        if proc.returncode != 0 or not result.exists():
            raise SystemExit(f"aiperf failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
        return json.loads(result.read_text())


def gpuprov_value(level: dict[str, Any], path: tuple[str, str | None]) -> float:
    value = level[path[0]]
    return float(value[path[1]] if path[1] else value)


def aiperf_value(data: dict[str, Any], path: tuple[str, str]) -> float:
    return float(data[path[0]][path[1]])


def accuracy(aiperf: Path, tokenizer: Path, repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with ServerProcess(Script(ttft_s=TTFT_S, per_token_s=ITL_S, tokens=TOKENS)) as url:
        for concurrency, requests in ACCURACY_LEVELS.items():
            runs: dict[str, list[dict[str, float]]] = {"gpuprov": [], "aiperf": []}
            for _ in range(repeats):  # alternated: drift on the machine hits both alike
                level = run_gpuprov(url, concurrency, requests, TOKENS)
                runs["gpuprov"].append({m: gpuprov_value(level, p[0]) for m, p in METRICS.items()})
                data = run_aiperf(aiperf, tokenizer, url, concurrency, requests, TOKENS)
                runs["aiperf"].append({m: aiperf_value(data, p[1]) for m, p in METRICS.items()})
            results[str(concurrency)] = {
                tool: {m: statistics.median(r[m] for r in tool_runs) for m in METRICS}
                for tool, tool_runs in runs.items()
            }
            print(f"accuracy c={concurrency}: {json.dumps(results[str(concurrency)])}", flush=True)
    return results


def rates(aiperf: Path, tokenizer: Path, repeats: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with ServerProcess(Script(tokens=RATE_TOKENS)) as url:
        for concurrency in RATE_LEVELS:
            g, a = [], []
            for _ in range(repeats):
                g.append(float(run_gpuprov(url, concurrency, RATE_REQUESTS, RATE_TOKENS)["requests_per_s"]))
                data = run_aiperf(aiperf, tokenizer, url, concurrency, RATE_REQUESTS, RATE_TOKENS)
                a.append(aiperf_value(data, ("request_throughput", "avg")))
            results[str(concurrency)] = {"gpuprov": statistics.median(g), "aiperf": statistics.median(a)}
            print(f"rate c={concurrency}: {json.dumps(results[str(concurrency)])}", flush=True)
    return results


def render(acc: dict[str, Any], rate: dict[str, Any], repeats: int, seconds: float, load: float | None) -> str:
    lines = [
        "# gpuprov bench vs aiperf (independent load tester)",
        "",
        f"`benchmarks/bench_vs_independent.py --repeats {repeats}`, medians of {repeats} alternated runs, "
        f"aiperf {AIPERF_VERSION} in its own venv, {os.cpu_count()} CPUs shared by client and server, "
        f"{seconds / 60:.1f} min in all"
        + (f", load average {load:.1f} over the last 15 min (other work ran on the machine)." if load else "."),
        "",
        f"## Accuracy: error vs truth (TTFT {TTFT_S * 1000:.0f} ms, {ITL_S * 1000:.0f} ms between tokens, "
        f"{TOKENS} tokens a request)",
        "",
        "| concurrency | metric | truth | gpuprov | error | aiperf | error | closer |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for conc, tools in acc.items():
        for metric, (_, _, truth_of) in METRICS.items():
            truth = truth_of(int(conc))
            g, a = tools["gpuprov"][metric], tools["aiperf"][metric]
            eg, ea = g / truth - 1, a / truth - 1
            # closer by more than 0.1 percentage point, else a tie (below what repeats reproduce)
            closer = "tie" if abs(abs(eg) - abs(ea)) < 0.001 else ("gpuprov" if abs(eg) < abs(ea) else "aiperf")
            lines.append(f"| {conc} | {metric} | {truth:.1f} | {g:.2f} | {eg:+.2%} | {a:.2f} | {ea:+.2%} | {closer} |")
    lines += [
        "",
        f"## Client speed: requests/s on a server with no delays ({RATE_TOKENS} tokens, {RATE_REQUESTS} requests)",
        "",
        "| concurrency | gpuprov req/s | aiperf req/s | ratio |",
        "| ---: | ---: | ---: | ---: |",
    ]
    for conc, r in rate.items():
        lines.append(f"| {conc} | {r['gpuprov']:.0f} | {r['aiperf']:.0f} | {r['gpuprov'] / r['aiperf']:.2f}x |")
    best_g = max(r["gpuprov"] for r in rate.values())
    best_a = max(r["aiperf"] for r in rate.values())
    lines += ["", f"Maximum rate: gpuprov {best_g:.0f} req/s, aiperf {best_a:.0f} req/s ({best_g / best_a:.2f}x).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "bench_vs_independent.md")
    parser.add_argument("--render", action="store_true", help="only redo the tables from the JSON next to --out")
    args = parser.parse_args()
    if args.render:
        saved = json.loads(args.out.with_suffix(".json").read_text())
        text = render(saved["accuracy"], saved["rates"], saved["repeats"], saved["seconds"], saved.get("load"))
        print(text)
        args.out.write_text(text)
        return
    start = time.perf_counter()
    aiperf, tokenizer = aiperf_env()
    acc = accuracy(aiperf, tokenizer, args.repeats)
    rate = rates(aiperf, tokenizer, args.repeats)
    seconds, load = time.perf_counter() - start, os.getloadavg()[2]
    text = render(acc, rate, args.repeats, seconds, load)
    print(text)
    args.out.write_text(text)
    saved = {"accuracy": acc, "rates": rate, "repeats": args.repeats, "seconds": seconds, "load": load}
    args.out.with_suffix(".json").write_text(json.dumps(saved, indent=2) + "\n")


if __name__ == "__main__":
    main()
