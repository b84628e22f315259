"""llama-cpp-python compiled for the GPUs that are actually here, then verified.

One module per job: :mod:`.buildplan` (the plan's types), :mod:`.buildhost` (what the host has, gathered
once: compilers, nvcc traits, the source's version), :mod:`.decision` (the build decided from a snapshot
and that, pure), :mod:`.source` (which version a source is), :mod:`.run` (running the planned command,
logged), :mod:`.verify` (CUDA linked, kernels present, offload, one completion), :mod:`.record` (what
gpuprov built into an environment), :mod:`.section` (the profile's ``llama_cpp`` section). The names
below are the package's interface.
"""

from provision.llama_build.buildhost import (
    BuildHost,
    gather_build_host,
    host_compiler_info,
    mem_available_mib,
    parse_compiler_version,
)
from provision.llama_build.buildplan import PACKAGE, BuildError, BuildPlan
from provision.llama_build.decision import (
    NO_COMPILER,
    PORTABLE_CMAKE_ARGS,
    arch_limits,
    current_python,
    decide_build,
    max_host_gcc,
    parse_arch_option,
    plan_build,
    rebound_jobs,
)
from provision.llama_build.record import build_matches, installed_build, record_build
from provision.llama_build.run import BuildResult, check_log_path, default_log_path, run_build, summarize_failure
from provision.llama_build.section import LlamaCppSection, gather_for_section, plan_from_section, profile_build_python
from provision.llama_build.source import source_version
from provision.llama_build.verify import Check, parse_cuobjdump_list, verify_build

__all__ = [
    "NO_COMPILER",
    "PACKAGE",
    "PORTABLE_CMAKE_ARGS",
    "BuildError",
    "BuildHost",
    "BuildPlan",
    "BuildResult",
    "Check",
    "LlamaCppSection",
    "arch_limits",
    "build_matches",
    "check_log_path",
    "current_python",
    "decide_build",
    "default_log_path",
    "gather_build_host",
    "gather_for_section",
    "host_compiler_info",
    "installed_build",
    "max_host_gcc",
    "mem_available_mib",
    "parse_arch_option",
    "parse_compiler_version",
    "parse_cuobjdump_list",
    "plan_build",
    "plan_from_section",
    "profile_build_python",
    "rebound_jobs",
    "record_build",
    "run_build",
    "source_version",
    "summarize_failure",
    "verify_build",
]
