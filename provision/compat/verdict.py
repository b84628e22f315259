"""``compat check``'s verdict: is this driver / GPU / package combination consistent? A pure function of a
:class:`~provision.compat.target.Target` and the :class:`~provision.compat.matrix.Matrix`.

Verdict ``ok`` (no problem found among what was given), ``incompatible`` (at least one pair cannot
work), ``unknown`` (some version is not in the matrix: never guessed compatible). A ``warning``
problem (e.g. a runtime that only starts through CUDA minor-version compatibility) leaves the
verdict alone.
"""

from __future__ import annotations

import datetime
from dataclasses import replace

from packaging.version import Version

from provision.compat.attention import check_flashinfer, check_xformers
from provision.compat.matrix import (
    Matrix,
    cuda_major,
    load_matrix,
    runs_on,
)
from provision.compat.report import EXIT_CODES, VERDICTS, Problem, Report, verdict_of
from provision.compat.target import GpuTarget, Target
from provision.compat.torch_check import check_torch
from provision.compat.vllm_check import check_vllm
from provision.versions import version_or_none

_UNKNOWN_KIND = {
    "torch": "torch_unknown",
    "vllm": "vllm_unknown",
    "flashinfer-python": "flashinfer_unknown",
    "xformers": "xformers_unknown",
    "llama-cpp-python": "llama_cpp_unknown",
}
_REFRESH_FIX = (
    "gpuprov compat refresh --user (reads the newer releases' metadata from the index into your overlay), "
    "then check again"
)


class Checker:
    """One check of a target: each package method adds the problems of its pairs."""

    def __init__(self, target: Target, matrix: Matrix, today: datetime.date | None = None) -> None:
        self.t = target
        self.m = matrix
        self.today = today
        self.problems: list[Problem] = []
        self.checked: list[str] = []
        self.skipped: list[str] = []
        self.driver = version_or_none(target.driver)

    def add(self, severity: str, kind: str, pair: str, reason: str, source: str, fix: str) -> None:
        self.problems.append(Problem(severity, pair, reason, source, fix, kind))

    def not_covered(self, name: str, text: str, table: str, fix: str = "") -> None:
        """``name`` ``text`` has no row in the matrix's ``table``: unknown, never guessed compatible."""
        coverage = self.m.coverage["flashinfer" if table == "flashinfer" else name]
        self.add(
            "unknown",
            _UNKNOWN_KIND[name],
            f"{name} {text}",
            f"{name} {text} is not in the matrix (covers {coverage})",
            f"compat.toml [{table}]",
            fix,
        )

    # -- shared: a CUDA runtime against the driver -----------------------------------------------------
    def runtime_vs_driver(self, what: str, cuda: str, kind: str, alternative: str = "") -> None:
        if self.driver is None:
            self.skipped.append(f"{what} ↔ driver: no driver known (give --driver)")
            return
        pair = f"{what} ↔ driver {self.t.driver}"
        self.checked.append(pair)
        floor = self.m.driver_floor(cuda)
        if floor is None:
            self.add("unknown", kind, pair, f"CUDA {cuda} is not in the matrix's driver table", "compat.toml", "")
            return
        floor_driver, floor_source = floor
        toolkit = self.m.toolkit_driver(cuda)
        if self.driver < Version(floor_driver):
            native = self.m.newest_cuda_for_driver(self.driver)
            self.add(
                "incompatible",
                kind,
                pair,
                f"{what} needs a CUDA {cuda_major(cuda)}.x runtime, which needs driver ≥ {floor_driver}; "
                f"driver {self.t.driver} supports CUDA {native or 'older than 11.8'} "
                '("CUDA driver version is insufficient for CUDA runtime version")',
                floor_source,
                f"upgrade the driver to ≥ {toolkit[0] if toolkit else floor_driver}"
                + (f", or {alternative}" if alternative else ""),
            )
        elif toolkit is not None and self.driver < Version(toolkit[0]):
            self.add(
                "warning",
                kind,
                pair,
                f"{what} is built with CUDA {cuda}, whose toolkit driver is {toolkit[0]}: driver "
                f"{self.t.driver} runs it only through minor-version compatibility, where PTX JIT fails "
                '("the provided PTX was compiled with an unsupported toolchain")',
                toolkit[1],
                f"upgrade the driver to ≥ {toolkit[0]} for full support",
            )

    def gpus_vs_archs(self, what: str, archs: tuple[str, ...], source: str, kind: str, fix: str) -> None:
        if not self.t.gpus:
            self.skipped.append(f"{what} ↔ GPU: no GPU known (give --gpu or --cc)")
            return
        for gpu in self.t.gpus:
            pair = f"{what} ↔ {gpu.label} (cc {gpu.compute_capability})"
            self.checked.append(pair)
            if not runs_on(archs, gpu.compute_capability):
                self.add(
                    "incompatible",
                    kind,
                    pair,
                    f"{what} has kernels for compute capability {', '.join(archs)}, not "
                    f'{gpu.compute_capability} ("no kernel image is available for execution on the device")',
                    source,
                    fix,
                )

    # -- llama-cpp-python ------------------------------------------------------------------------------
    def llama_cpp(self) -> None:
        """llama-cpp-python pins no torch: its version against the matrix, its build against the GPUs.

        Which architectures a build holds is not in its version: a snapshot says whether its libraries
        link CUDA at all; ``gpuprov build llama-cpp`` builds for, and verifies, the GPUs present.
        """
        text = self.t.packages.get("llama-cpp-python")
        if text is None:
            return
        version = Version(text)
        newest = Version(self.m.llama_cpp_newest)
        label = f"llama-cpp-python {text}"
        if Version(version.public) > newest:
            self.add(
                "unknown",
                "llama_cpp_unknown",
                label,
                f"llama-cpp-python {version.public} is newer than the matrix covers "
                f"({self.m.coverage['llama_cpp_python']})",
                "compat.toml [llama_cpp]",
                "gpuprov build llama-cpp builds it for this GPU and verifies the result",
            )
            return
        if not self.t.gpus:
            self.skipped.append(f"{label} ↔ GPU: no GPU known (give --gpu or --cc)")
            return
        for gpu in self.t.gpus:
            pair = f"{label} ↔ {gpu.label} (cc {gpu.compute_capability})"
            self.checked.append(pair)
            if self.t.llama_cpp_cuda is False:
                self.add(
                    "incompatible",
                    "llama_cpp_cpu",
                    pair,
                    f"{label} is a CPU-only build (its libraries do not link CUDA): it cannot offload to the GPU",
                    self.m.llama_cpp_source,
                    "gpuprov build llama-cpp (compiles it for the GPUs present)",
                )
                return
            if not any(runs_on(w.archs, gpu.compute_capability) for w in self.m.llama_cpp_wheels):
                self.add(
                    "warning",
                    "llama_cpp_gpu",
                    pair,
                    f"no prebuilt llama-cpp-python CUDA wheel has kernels for compute capability "
                    f"{gpu.compute_capability}: only a source build runs on it",
                    self.m.llama_cpp_wheels[-1].source,
                    "gpuprov build llama-cpp",
                )

    def matrix_age(self) -> dict[str, object]:
        overlay = self.m.overlay
        return {
            "refreshed": overlay["refreshed"] if overlay else self.m.refreshed,
            "age_days": self.m.age_days(self.today),
            "overlay": overlay["path"] if overlay else None,
        }

    def staleness(self) -> list[str]:
        """Versions newer than every row of the matrix: their 'unknown' says how old the matrix is and how to
        refresh it without a gpuprov release."""
        age = self.matrix_age()
        when = f"index read {age['refreshed']}, {age['age_days']} day(s) ago" if age["refreshed"] else "age unknown"
        if age["overlay"]:
            when += f", with your overlay {age['overlay']}"
        stale = []
        for name, text in self.t.packages.items():
            newest = self.m.newest(name)
            v = version_or_none(text)
            if newest is None or v is None or Version(v.public) <= newest:
                continue
            stale.append(f"{name} {v.public} is newer than the matrix (its newest {name}: {newest}; {when})")
            # refresh reads vLLM / xformers / flashinfer rows from metadata; torch builds and llama.cpp wheels are
            # researched facts that come with a gpuprov release
            fix = _REFRESH_FIX if name in ("vllm", "xformers", "flashinfer-python") else None
            self.problems = [
                replace(p, reason=f"{p.reason}; newer than its newest ({newest}; {when})", fix=fix or p.fix)
                if p.kind == _UNKNOWN_KIND[name]
                else p
                for p in self.problems
            ]
        return stale

    def run(self) -> Report:
        torch = check_torch(self)
        check_vllm(self, torch)
        check_flashinfer(self, torch)
        check_xformers(self)
        self.llama_cpp()
        stale = self.staleness()
        verdict = verdict_of(self.problems)
        if verdict == "ok" and not self.checked:
            # nothing was compared: that is not "compatible"
            verdict = "unknown"
            if not self.skipped:
                self.skipped.append(
                    "nothing to check: no tracked package (torch, vllm, flashinfer-python, xformers, "
                    "llama-cpp-python) is installed or given with --with"
                )
        return Report(verdict, self.problems, self.checked, self.skipped, stale, self.matrix_age())


def check(target: Target, matrix: Matrix | None = None, *, today: datetime.date | None = None) -> Report:
    """Every problem between the driver, the GPUs and the packages of ``target`` (``today``: for the matrix's age)."""
    return Checker(target, matrix or load_matrix(), today).run()


__all__ = ["EXIT_CODES", "VERDICTS", "GpuTarget", "Problem", "Report", "Target", "check", "verdict_of"]
