"""Writes the *constructed* snapshots in this folder from published specifications.

Run: `python tests/data/snapshots/construct.py` (rewrites the JSON files next to it).

Constructed snapshots stand in for GPUs no one has recorded with `gpuprov doctor --save` yet. Each
one says so in `origin` ("constructed") and in `note` (which card, where the numbers come from).
Figures that vary between boards (clocks, thermal thresholds) are typical values, not measurements.
Snapshots recorded on real machines (`*.recorded.json`) are never written by this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from provision.nvmlcodes import decode_clock_event_reasons
from provision.snapshot import (
    CudaToolkit,
    DriverInfo,
    GpuInfo,
    HostInfo,
    NvmlStatus,
    PackageInfo,
    PythonEnv,
    Snapshot,
)

HERE = Path(__file__).resolve().parent
CREATED = "2026-11-23T00:00:00+00:00"


def _driver(version: str, cuda: str, flavor: str = "proprietary") -> DriverInfo:
    major = version.split(".")[0]
    return DriverInfo(
        nvml=NvmlStatus(True, "ok", ""),
        kernel_module_version=version,
        kernel_module_flavor=flavor,
        nvml_library_version=version,
        driver_version=version,
        nvml_version=f"{cuda.split('.')[0]}.{version}" if int(major) >= 525 else version,
        cuda_driver_version=cuda,
        persistenced_running=False,
    )


def _gpu(index: int = 0, *, idle_mask: int = 0x1, **kw) -> GpuInfo:
    g = GpuInfo(index=index, name=kw.pop("name"))
    g.uuid = f"GPU-00000000-0000-0000-0000-00000000000{index}"
    g.serial = None
    g.unavailable["serial"] = "not_supported"
    g.pci_bus_id = f"00000000:0{index + 1}:00.0"
    g.performance_state = 8
    g.clock_event_reasons_mask = idle_mask
    g.clock_event_reasons = decode_clock_event_reasons(idle_mask)
    g.compute_mode = "default"
    g.persistence_mode = False
    g.display_active = False
    g.mig_enabled = None
    g.unavailable["mig_enabled"] = "not_supported"
    g.ecc_enabled = None
    g.unavailable["ecc_enabled"] = "not_supported"
    for key, value in kw.items():
        setattr(g, key, value)
    g.vram_free_mib = g.vram_total_mib - g.vram_used_mib - (g.vram_reserved_mib or 0)
    return g


def _python(packages: dict[str, str], torch_cuda: str | None = None, llama_cuda: bool | None = None) -> PythonEnv:
    env = PythonEnv(interpreter="/opt/llm/.venv/bin/python", python_version="3.11.9")
    for name, version in packages.items():
        local = version.partition("+")[2]
        env.packages[name] = PackageInfo(name, version, local if local.startswith("cu") else None)
    env.torch_cuda = torch_cuda
    env.llama_cpp_cuda = llama_cuda
    env.pynvml_providers = ["nvidia-ml-py"] if "nvidia-ml-py" in packages else []
    return env


def _host(cores: int, ram_mib: int, *, laptop: bool, graphical: bool) -> HostInfo:
    return HostInfo(
        hostname="constructed-host",
        kernel="6.8.0-45-generic",
        distro="Ubuntu 24.04.1 LTS",
        cpu_model="(constructed)",
        cpu_cores=cores,
        ram_mib=ram_mib,
        is_root=False,
        systemd_pid1=True,
        graphical_session=graphical,
        laptop=laptop,
    )


def rtx4090_laptop() -> Snapshot:
    # NVIDIA RTX 4090 Laptop GPU: AD103, 16 GB GDDR6 (nvidia-smi shows 16376 MiB, seed 003), TGP 80-150 W
    # plus up to 25 W Dynamic Boost (nvidia.com RTX 4090 Laptop specs). Power as real laptops with drivers
    # after 515 show it (published readings, ../../../../shared/research/real-readings.md: an RTX 4070 Laptop
    # on 566.36 reads enforced 61.24 / default 55 / min 5 / max 140 W with "Requested Power Limit: N/A"; an
    # RTX 4080 Mobile answers nvidia-smi -pl with "Changing power management limit is not supported" and
    # nvmlDeviceGetPowerManagementLimit NOT_SUPPORTED while the enforced limit reads, Dynamic-Boost/nvidia_oc
    # PR 22): min/max reported, the management limit unreadable, the setter refused; locked clocks still work.
    gpu = _gpu(
        name="NVIDIA GeForce RTX 4090 Laptop GPU",
        compute_capability="8.9",
        architecture="Ada",
        vram_total_mib=16376,
        vram_used_mib=9,
        vram_reserved_mib=250,
        power_limit_w=None,
        power_default_limit_w=150.0,
        power_enforced_limit_w=150.0,
        power_draw_w=14.2,
        power_min_limit_w=5.0,
        power_max_limit_w=175.0,
        temperature_c=46,
        temperature_slowdown_c=87,
        temperature_shutdown_c=102,
        max_sm_clock_mhz=3105,
        max_memory_clock_mhz=9001,
        pcie_generation_current=1,
        pcie_generation_max=4,
        pcie_width_current=16,
        pcie_width_max=16,
    )
    gpu.unavailable["power_limit_w"] = "not_supported"
    gpu.unavailable["set_power_limit"] = "not_supported"
    return Snapshot(
        origin="constructed",
        created_at=CREATED,
        gpuprov_version="0.1.0",
        note="constructed: NVIDIA GeForce RTX 4090 Laptop GPU (16 GB) from NVIDIA's published specs and seed 003; "
        "min/max reported, management limit N/A and setter not supported, as real laptops show",
        host=_host(24, 31744, laptop=True, graphical=True),
        driver=_driver("560.35.03", "12.6", flavor="open"),
        gpus=[gpu],
        cuda_toolkits=[CudaToolkit("/usr/local/cuda-12.6/bin/nvcc", "12.6.77", ["PATH", "/usr/local/cuda-12.6"])],
        python=_python(
            {
                "torch": "2.7.1+cu128",
                "vllm": "0.10.1",
                "flashinfer-python": "0.2.8",
                "transformers": "4.55.0",
                "triton": "3.3.1",
                "nvidia-ml-py": "12.575.51",
            },
            torch_cuda="12.8",
        ),
    )


def rtx4090() -> Snapshot:
    # GeForce RTX 4090 (desktop, AD102): 24 GB (24564 MiB in nvidia-smi), 450 W default board power; the
    # Founders Edition allows 150-600 W (nvidia-smi -q -d POWER on an FE; seed 000 sets 250 W).
    gpu = _gpu(
        name="NVIDIA GeForce RTX 4090",
        compute_capability="8.9",
        architecture="Ada",
        vram_total_mib=24564,
        vram_used_mib=310,
        vram_reserved_mib=342,
        power_limit_w=450.0,
        power_default_limit_w=450.0,
        power_min_limit_w=150.0,
        power_max_limit_w=600.0,
        power_enforced_limit_w=450.0,
        power_draw_w=21.5,
        display_active=True,
        temperature_c=38,
        temperature_slowdown_c=87,
        temperature_shutdown_c=92,
        max_sm_clock_mhz=3120,
        max_memory_clock_mhz=10501,
        pcie_generation_current=1,
        pcie_generation_max=4,
        pcie_width_current=16,
        pcie_width_max=16,
    )
    return Snapshot(
        origin="constructed",
        created_at=CREATED,
        gpuprov_version="0.1.0",
        note="constructed: NVIDIA GeForce RTX 4090 Founders Edition (24 GB, 450 W default, 150-600 W range)",
        host=_host(16, 64512, laptop=False, graphical=True),
        driver=_driver("570.133.07", "12.8"),
        gpus=[gpu],
        python=_python({"ollama": "0.4.7"}),
    )


def rtx4080() -> Snapshot:
    # GeForce RTX 4080 (AD103): 16 GB (16376 MiB), 320 W default, 150-320 W on the FE (seed 001 host).
    gpu = _gpu(
        name="NVIDIA GeForce RTX 4080",
        compute_capability="8.9",
        architecture="Ada",
        vram_total_mib=16376,
        vram_used_mib=3,
        vram_reserved_mib=250,
        power_limit_w=320.0,
        power_default_limit_w=320.0,
        power_min_limit_w=150.0,
        power_max_limit_w=320.0,
        power_enforced_limit_w=320.0,
        power_draw_w=9.8,
        temperature_c=33,
        temperature_slowdown_c=87,
        temperature_shutdown_c=92,
        max_sm_clock_mhz=3105,
        max_memory_clock_mhz=11201,
        pcie_generation_current=1,
        pcie_generation_max=4,
        pcie_width_current=16,
        pcie_width_max=16,
    )
    return Snapshot(
        origin="constructed",
        created_at=CREATED,
        gpuprov_version="0.1.0",
        note="constructed: NVIDIA GeForce RTX 4080 (16 GB, 320 W) headless inference box",
        host=_host(12, 32768, laptop=False, graphical=False),
        driver=_driver("550.120", "12.4"),
        gpus=[gpu],
        cuda_toolkits=[CudaToolkit("/usr/local/cuda-12.4/bin/nvcc", "12.4.131", ["PATH", "/usr/local/cuda-12.4"])],
        python=_python({"llama-cpp-python": "0.3.8", "torch": "2.6.0+cu124"}, torch_cuda="12.4", llama_cuda=True),
    )


def rtx3090ti() -> Snapshot:
    # GeForce RTX 3090 Ti (GA102): 24 GB (24564 MiB), 450 W default board power, cc 8.6.
    gpu = _gpu(
        name="NVIDIA GeForce RTX 3090 Ti",
        compute_capability="8.6",
        architecture="Ampere",
        vram_total_mib=24564,
        vram_used_mib=1,
        vram_reserved_mib=266,
        power_limit_w=450.0,
        power_default_limit_w=450.0,
        power_min_limit_w=100.0,
        power_max_limit_w=450.0,
        power_enforced_limit_w=450.0,
        power_draw_w=32.1,
        temperature_c=41,
        temperature_slowdown_c=95,
        temperature_shutdown_c=98,
        max_sm_clock_mhz=2115,
        max_memory_clock_mhz=10501,
        pcie_generation_current=1,
        pcie_generation_max=4,
        pcie_width_current=16,
        pcie_width_max=16,
    )
    return Snapshot(
        origin="constructed",
        created_at=CREATED,
        gpuprov_version="0.1.0",
        note="constructed: NVIDIA GeForce RTX 3090 Ti (24 GB, 450 W)",
        host=_host(16, 65536, laptop=False, graphical=False),
        driver=_driver("535.183.01", "12.2"),
        gpus=[gpu],
        python=_python({"torch": "2.5.1+cu121", "vllm": "0.6.6.post1", "xformers": "0.0.28.post3"}, torch_cuda="12.1"),
    )


def a100() -> Snapshot:
    # A100-SXM4-80GB: 80 GB HBM2e (81920 MiB), 400 W TDP (100-400 W), ECC on, MIG capable (off), PCIe gen4 x16.
    gpus = []
    for i in range(2):
        g = _gpu(
            i,
            name="NVIDIA A100-SXM4-80GB",
            compute_capability="8.0",
            architecture="Ampere",
            vram_total_mib=81920,
            vram_used_mib=0,
            vram_reserved_mib=567,
            power_limit_w=400.0,
            power_default_limit_w=400.0,
            power_min_limit_w=100.0,
            power_max_limit_w=400.0,
            power_enforced_limit_w=400.0,
            power_draw_w=61.0,
            persistence_mode=True,
            performance_state=0,
            temperature_c=31,
            temperature_slowdown_c=92,
            temperature_shutdown_c=95,
            max_sm_clock_mhz=1410,
            max_memory_clock_mhz=1593,
            pcie_generation_current=4,
            pcie_generation_max=4,
            pcie_width_current=16,
            pcie_width_max=16,
            ecc_enabled=True,
            mig_enabled=False,
        )
        g.unavailable.pop("ecc_enabled")
        g.unavailable.pop("mig_enabled")
        gpus.append(g)
    snap = Snapshot(
        origin="constructed",
        created_at=CREATED,
        gpuprov_version="0.1.0",
        note="constructed: 2x NVIDIA A100-SXM4-80GB (400 W, ECC on, MIG off)",
        host=_host(64, 515072, laptop=False, graphical=False),
        driver=_driver("550.127.08", "12.4"),
        gpus=gpus,
        python=_python({"torch": "2.6.0+cu124", "vllm": "0.8.5"}, torch_cuda="12.4"),
    )
    snap.driver.persistenced_running = True
    return snap


def l4() -> Snapshot:
    # NVIDIA L4 (AD104): 24 GB GDDR6 (23034 MiB usable), 72 W (40-72 W), ECC on by default, PCIe gen4 x16.
    g = _gpu(
        name="NVIDIA L4",
        compute_capability="8.9",
        architecture="Ada",
        vram_total_mib=23034,
        vram_used_mib=0,
        vram_reserved_mib=307,
        power_limit_w=72.0,
        power_default_limit_w=72.0,
        power_min_limit_w=40.0,
        power_max_limit_w=72.0,
        power_enforced_limit_w=72.0,
        power_draw_w=16.3,
        persistence_mode=True,
        temperature_c=42,
        temperature_slowdown_c=92,
        temperature_shutdown_c=95,
        max_sm_clock_mhz=2040,
        max_memory_clock_mhz=6251,
        pcie_generation_current=4,
        pcie_generation_max=4,
        pcie_width_current=16,
        pcie_width_max=16,
        ecc_enabled=True,
        mig_enabled=None,
    )
    g.unavailable.pop("ecc_enabled")
    snap = Snapshot(
        origin="constructed",
        created_at=CREATED,
        gpuprov_version="0.1.0",
        note="constructed: NVIDIA L4 (24 GB, 72 W, ECC on) cloud instance",
        host=_host(8, 32768, laptop=False, graphical=False),
        driver=_driver("570.133.20", "12.8", flavor="open"),
        gpus=[g],
        python=_python({"torch": "2.8.0+cu128", "vllm": "0.10.2"}, torch_cuda="12.8"),
    )
    snap.driver.persistenced_running = True
    return snap


def rtx5090() -> Snapshot:
    # GeForce RTX 5090 (GB202): 32 GB GDDR7 (32607 MiB), 575 W default, 400-600 W, PCIe gen5 x16, cc 12.0.
    g = _gpu(
        name="NVIDIA GeForce RTX 5090",
        compute_capability="12.0",
        architecture="Blackwell",
        vram_total_mib=32607,
        vram_used_mib=420,
        vram_reserved_mib=493,
        power_limit_w=575.0,
        power_default_limit_w=575.0,
        power_min_limit_w=400.0,
        power_max_limit_w=600.0,
        power_enforced_limit_w=575.0,
        power_draw_w=30.0,
        display_active=True,
        temperature_c=36,
        temperature_slowdown_c=90,
        temperature_shutdown_c=93,
        max_sm_clock_mhz=3090,
        max_memory_clock_mhz=14001,
        pcie_generation_current=1,
        pcie_generation_max=5,
        pcie_width_current=16,
        pcie_width_max=16,
    )
    return Snapshot(
        origin="constructed",
        created_at=CREATED,
        gpuprov_version="0.1.0",
        note="constructed: NVIDIA GeForce RTX 5090 (32 GB, 575 W) with a torch wheel lacking sm_120",
        host=_host(16, 98304, laptop=False, graphical=True),
        driver=_driver("575.64.03", "12.9", flavor="open"),
        gpus=[g],
        python=_python({"torch": "2.6.0+cu124"}, torch_cuda="12.4"),
    )


def h100() -> Snapshot:
    # Numbers read on the device machine on 2026-11-22 (shared/research/device-h100: `nvidia-smi -q` and
    # pynvml queries). Thermal thresholds were not part of those readings.
    g = _gpu(
        name="NVIDIA H100 80GB HBM3",
        compute_capability="9.0",
        architecture="Hopper",
        vram_total_mib=81559,
        vram_used_mib=0,
        vram_reserved_mib=480,
        power_limit_w=700.0,
        power_default_limit_w=700.0,
        power_min_limit_w=200.0,
        power_max_limit_w=700.0,
        power_enforced_limit_w=700.0,
        power_draw_w=112.5,
        persistence_mode=True,
        performance_state=0,
        temperature_c=35,
        max_sm_clock_mhz=1980,
        max_memory_clock_mhz=2619,
        pcie_generation_current=5,
        pcie_generation_max=5,
        pcie_width_current=16,
        pcie_width_max=16,
        ecc_enabled=True,
        mig_enabled=False,
        pci_bus_id="00000000:00:06.0",
    )
    g.unavailable.pop("ecc_enabled")
    g.unavailable.pop("mig_enabled")
    g.unavailable["temperature_slowdown_c"] = "not_recorded"
    g.unavailable["temperature_shutdown_c"] = "not_recorded"
    pkgs = {}
    for line in (HERE.parents[3] / "shared/research/device-h100/pip-list.txt").read_text().splitlines()[2:]:
        parts = line.split()
        if len(parts) >= 2:
            pkgs[parts[0].lower().replace("_", "-")] = parts[1]
    pkgs["torch"] = "2.11.0+cu130"
    host = _host(16, 128000, laptop=False, graphical=False)
    host.systemd_pid1 = False
    host.is_root = True
    host.distro = None
    host.kernel = None
    return Snapshot(
        origin="constructed",
        created_at="2026-11-22T16:01:51+00:00",
        gpuprov_version="0.1.0",
        note="constructed from readings of the device machine's NVIDIA H100 80GB HBM3 on 2026-11-22 "
        "(shared/research/device-h100: nvidia-smi -q, pynvml queries, pip list); "
        "not a gpuprov --save recording: re-record on the device",
        host=host,
        driver=_driver("580.159.04", "13.0"),
        gpus=[g],
        cuda_toolkits=[CudaToolkit("/usr/local/cuda/bin/nvcc", "13.0", ["/usr/local/cuda"])],
        python=_python(pkgs, torch_cuda="13.0"),
    )


SNAPSHOTS = {
    "rtx4090-laptop": rtx4090_laptop,
    "rtx4090": rtx4090,
    "rtx4080": rtx4080,
    "rtx3090ti": rtx3090ti,
    "a100x2": a100,
    "l4": l4,
    "rtx5090": rtx5090,
    "h100": h100,
}

if __name__ == "__main__":
    for name, make in SNAPSHOTS.items():
        snap = make()
        Snapshot.from_dict(snap.to_dict())  # validates
        (HERE / f"{name}.constructed.json").write_text(snap.to_json() + "\n")
        print(f"wrote {name}.constructed.json")
