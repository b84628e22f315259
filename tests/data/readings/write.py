# ruff: noqa: E501  (addresses and one-row-per-value data)
"""Writes the nvidia-smi readings in this folder from the values of published readings.

Run: `python tests/data/readings/write.py` (rewrites the *.q.txt / *.qx.xml files it makes; the device
reading h100-580-device.q.txt, taken on gpuprov's own device machine, is not touched).

Each reading is the output `nvidia-smi -q` (text) or `nvidia-smi -q -x` (XML) of its driver would give for
the values a published reading shows (../../../../shared/research/real-readings.md lists them with their
addresses; SOURCES below repeats each address): driver, CUDA version, power limits and draw, persistence, MIG,
GPU count and the trimmed/duplicate-UUID quirks are theirs; clocks, temperatures, memory figures and PCIe links
are typical values of the board where the facts do not give them. Only values are taken, never their text;
serial numbers and UUIDs are made up (GPU-00000000-...). The layout follows the driver's schema: XML v11
(before 525), v12 with the old power tags (525), v12 with the tags renamed at 535, v13 (from 580); the text
form names the power limits "Power Limit"/"Enforced Power Limit" before 535, "Requested"/"Current" after.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
NA = "N/A"

#: reading → (source address, what the reading shows)
SOURCES = {
    "rtx4090-535.qx.xml": "github.com/netdata/netdata/blob/04b1cf54270c4e21c02e322e577e7e96d547c9ee/src/go/plugin/go.d/collector/nvidia_smi/testdata/rtx-4090-driver-535.xml",
    "rtx4090x8-550.q.txt": "github.com/thamada/nvidia-smi/blob/c4c8a463a61e4ac67e3d7956da104b302760a498/gls/RTX4090_smi.py",
    "rtx4080super-595.q.txt": "github.com/utkuozdemir/nvidia_gpu_exporter/blob/e656cd81a180e7e0e7862b53c9acd4c2fb0f590b/internal/captures/linux-x86_64__nvidia-geforce-rtx-4080-super__595.71.05.txt",
    "rtx4070laptop-566.q.txt": "github.com/Jesse3692/MultiLanguageLearning/blob/46c9289fab118c5fabceaa15f11a0d44101cef43/cuda-c/docs/nvidia-smi.md",
    "rtx3060laptop-515.qx.xml": "github.com/netdata/netdata/blob/04b1cf54270c4e21c02e322e577e7e96d547c9ee/src/go/plugin/go.d/collector/nvidia_smi/testdata/rtx-3060.xml",
    "h100-590.q.txt": "github.com/utkuozdemir/nvidia_gpu_exporter/blob/e656cd81a180e7e0e7862b53c9acd4c2fb0f590b/internal/captures/linux-x86_64__nvidia-h100-80gb-hbm3__590.48.01.txt",
    "h100mig-590.q.txt": "github.com/utkuozdemir/nvidia_gpu_exporter/blob/e656cd81a180e7e0e7862b53c9acd4c2fb0f590b/internal/captures/linux-x86_64__nvidia-h100-mig__590.48.01.txt",
    "a100mig-510.qx.xml": "github.com/netdata/netdata/blob/04b1cf54270c4e21c02e322e577e7e96d547c9ee/src/go/plugin/go.d/collector/nvidia_smi/testdata/a100-sxm4-mig.xml",
    "a100-535.qx.xml": "github.com/influxdata/telegraf/blob/b27263146617cefe16c0b300107b58b111a7fa57/plugins/inputs/nvidia_smi/testdata/a100-sxm4-v12.xml",
    "l40s-595.q.txt": "github.com/utkuozdemir/nvidia_gpu_exporter/blob/e656cd81a180e7e0e7862b53c9acd4c2fb0f590b/internal/captures/linux-x86_64__nvidia-l40s__595.80.txt",
    "l4-550.q.txt": "github.com/thamada/nvidia-smi/blob/c4c8a463a61e4ac67e3d7956da104b302760a498/gls/L4_smi.py",
    "rtx3090-525.qx.xml": "github.com/influxdata/telegraf/blob/b27263146617cefe16c0b300107b58b111a7fa57/plugins/inputs/nvidia_smi/testdata/rtx-3090-v12.xml",
    "rtx3090-590.qx.xml": "github.com/influxdata/telegraf/blob/58ff61d01be05ec0d4c2f57c8c89031e026fa0b9/plugins/inputs/nvidia_smi/testdata/3090-v13.xml",
    "rtx2080x2-590.qx.xml": "github.com/influxdata/telegraf/blob/58ff61d01be05ec0d4c2f57c8c89031e026fa0b9/plugins/inputs/nvidia_smi/testdata/dual_2080-v13.xml",
}


def gpu(
    name,
    arch,
    *,
    vram,
    used=1,
    reserved=0,
    power,
    draw,
    persistence=True,
    pstate="P8",
    temp=40,
    slowdown=None,
    shutdown=None,
    tlimit=None,
    sm=2100,
    mem=9751,
    pcie=(4, 4),
    width=16,
    ecc=NA,
    mig=NA,
    idle=True,
    display=False,
    bus=1,
):
    """One GPU's values. ``power``: (current/enforced, requested, default, min, max) in W, None for N/A."""
    return dict(
        name=name,
        arch=arch,
        vram=vram,
        used=used,
        reserved=reserved,
        power=power,
        draw=draw,
        persistence=persistence,
        pstate=pstate,
        temp=temp,
        slowdown=slowdown,
        shutdown=shutdown,
        tlimit=tlimit,
        sm=sm,
        mem=mem,
        pcie=pcie,
        width=width,
        ecc=ecc,
        mig=mig,
        idle=idle,
        display=display,
        bus=bus,
    )


def _w(value):
    return NA if value is None else f"{value:.2f} W"


def _c(value):
    return NA if value is None else f"{value} C"


def _onoff(flag):
    return "Enabled" if flag else "Disabled"


# -- text ------------------------------------------------------------------------------------------------


def _t(out, depth, label, value=None):
    pad = "    " * depth
    if value is None:
        out.append(f"{pad}{label}")
    else:
        out.append(f"{pad}{label}".ljust(55) + f": {value}")


def text_reading(driver, cuda, gpus, *, stamp="Mon Dec  1 10:00:00 2025"):
    new_power = int(driver.split(".")[0]) >= 535
    out = ["", "==============NVSMI LOG==============", ""]
    _t(out, 0, "Timestamp", stamp)
    _t(out, 0, "Driver Version", driver)
    _t(out, 0, "CUDA Version", cuda)
    out.append("")
    _t(out, 0, "Attached GPUs", str(len(gpus)))
    for i, g in enumerate(gpus):
        bus = f"00000000:{g['bus']:02X}:00.0"
        out.append(f"GPU {bus}")
        _t(out, 1, "Product Name", g["name"])
        _t(out, 1, "Product Architecture", g["arch"])
        _t(out, 1, "Display Active", _onoff(g["display"]))
        _t(out, 1, "Persistence Mode", _onoff(g["persistence"]))
        _t(out, 1, "MIG Mode")
        _t(out, 2, "Current", g["mig"])
        _t(out, 2, "Pending", g["mig"])
        _t(out, 1, "Serial Number", NA)
        _t(out, 1, "GPU UUID", f"GPU-00000000-0000-0000-0000-{i:012d}")
        _t(out, 1, "PCI")
        _t(out, 2, "Bus Id", bus)
        _t(out, 2, "GPU Link Info")
        _t(out, 3, "PCIe Generation")
        _t(out, 4, "Max", str(g["pcie"][0]))
        _t(out, 4, "Current", str(g["pcie"][1]))
        _t(out, 3, "Link Width")
        _t(out, 4, "Max", f"{g['width']}x")
        _t(out, 4, "Current", f"{g['width']}x")
        _t(out, 1, "Performance State", g["pstate"])
        _t(out, 1, "Clocks Event Reasons" if new_power else "Clocks Throttle Reasons")
        _t(out, 2, "Idle", "Active" if g["idle"] else "Not Active")
        _t(out, 2, "SW Power Cap", "Not Active")
        _t(out, 2, "HW Slowdown", "Not Active")
        _t(out, 3, "HW Thermal Slowdown", "Not Active")
        _t(out, 3, "HW Power Brake Slowdown", "Not Active")
        _t(out, 2, "SW Thermal Slowdown", "Not Active")
        _t(out, 1, "FB Memory Usage")
        total = g["vram"]
        _t(out, 2, "Total", f"{total} MiB")
        _t(out, 2, "Reserved", f"{g['reserved']} MiB")
        _t(out, 2, "Used", f"{g['used']} MiB")
        _t(out, 2, "Free", f"{total - g['reserved'] - g['used']} MiB")
        _t(out, 1, "Compute Mode", "Default")
        _t(out, 1, "ECC Mode")
        _t(out, 2, "Current", g["ecc"])
        _t(out, 2, "Pending", g["ecc"])
        _t(out, 1, "Temperature")
        _t(out, 2, "GPU Current Temp", _c(g["temp"]))
        if g["tlimit"] is not None:
            _t(out, 2, "GPU T.Limit Temp", _c(g["tlimit"][0]))
            _t(out, 2, "GPU Shutdown T.Limit Temp", _c(g["tlimit"][1]))
            _t(out, 2, "GPU Slowdown T.Limit Temp", _c(g["tlimit"][2]))
        else:
            _t(out, 2, "GPU Shutdown Temp", _c(g["shutdown"]))
            _t(out, 2, "GPU Slowdown Temp", _c(g["slowdown"]))
        cur, req, default, lo, hi = g["power"]
        if new_power:
            _t(out, 1, "GPU Power Readings")
            _t(out, 2, "Average Power Draw", _w(g["draw"]))
            _t(out, 2, "Instantaneous Power Draw", _w(g["draw"]))
            _t(out, 2, "Current Power Limit", _w(cur))
            _t(out, 2, "Requested Power Limit", _w(req))
        else:
            _t(out, 1, "Power Readings")
            _t(out, 2, "Power Management", "Supported" if req is not None else NA)
            _t(out, 2, "Power Draw", _w(g["draw"]))
            _t(out, 2, "Power Limit", _w(req))
        _t(out, 2, "Default Power Limit", _w(default))
        if not new_power:
            _t(out, 2, "Enforced Power Limit", _w(cur))
        _t(out, 2, "Min Power Limit", _w(lo))
        _t(out, 2, "Max Power Limit", _w(hi))
        _t(out, 1, "Max Clocks")
        _t(out, 2, "Graphics", f"{g['sm']} MHz")
        _t(out, 2, "SM", f"{g['sm']} MHz")
        _t(out, 2, "Memory", f"{g['mem']} MHz")
        _t(out, 1, "Processes", "None")
        out.append("")
    return "\n".join(out) + "\n"


# -- XML -------------------------------------------------------------------------------------------------


def xml_reading(driver, cuda, gpus, *, schema, stamp="Mon Dec  1 10:00:00 2025"):
    """``schema``: v11, v12 (the power tags follow the driver: renamed from 535), v13."""
    new_power = int(driver.split(".")[0]) >= 535
    events = schema == "v13"
    x = ['<?xml version="1.0" ?>', f'<!DOCTYPE nvidia_smi_log SYSTEM "nvsmi_device_{schema}.dtd">', "<nvidia_smi_log>"]
    x += [
        f"\t<timestamp>{stamp}</timestamp>",
        f"\t<driver_version>{driver}</driver_version>",
        f"\t<cuda_version>{cuda}</cuda_version>",
        f"\t<attached_gpus>{len(gpus)}</attached_gpus>",
    ]
    for i, g in enumerate(gpus):
        bus = f"00000000:{g['bus']:02X}:00.0"
        total = g["vram"]
        cur, req, default, lo, hi = g["power"]
        reason = "clocks_event_reason" if events else "clocks_throttle_reason"
        x.append(f'\t<gpu id="{bus}">')
        x += [
            f"\t\t<product_name>{g['name']}</product_name>",
            f"\t\t<product_architecture>{g['arch']}</product_architecture>",
            f"\t\t<display_active>{_onoff(g['display'])}</display_active>",
            f"\t\t<persistence_mode>{_onoff(g['persistence'])}</persistence_mode>",
            f"\t\t<mig_mode>\n\t\t\t<current_mig>{g['mig']}</current_mig>\n\t\t\t<pending_mig>{g['mig']}</pending_mig>\n\t\t</mig_mode>",
            "\t\t<serial>N/A</serial>",
            f"\t\t<uuid>GPU-00000000-0000-0000-0000-{i:012d}</uuid>",
            "\t\t<pci>",
            f"\t\t\t<pci_bus_id>{bus}</pci_bus_id>",
            "\t\t\t<pci_gpu_link_info>\n\t\t\t\t<pcie_gen>",
            f"\t\t\t\t\t<max_link_gen>{g['pcie'][0]}</max_link_gen>",
            f"\t\t\t\t\t<current_link_gen>{g['pcie'][1]}</current_link_gen>",
            "\t\t\t\t</pcie_gen>\n\t\t\t\t<link_widths>",
            f"\t\t\t\t\t<max_link_width>{g['width']}x</max_link_width>",
            f"\t\t\t\t\t<current_link_width>{g['width']}x</current_link_width>",
            "\t\t\t\t</link_widths>\n\t\t\t</pci_gpu_link_info>",
            "\t\t</pci>",
            f"\t\t<performance_state>{g['pstate']}</performance_state>",
            f"\t\t<{reason}s>",
            f"\t\t\t<{reason}_gpu_idle>{'Active' if g['idle'] else 'Not Active'}</{reason}_gpu_idle>",
            f"\t\t\t<{reason}_sw_power_cap>Not Active</{reason}_sw_power_cap>",
            f"\t\t\t<{reason}_hw_slowdown>Not Active</{reason}_hw_slowdown>",
            f"\t\t\t<{reason}_sw_thermal_slowdown>Not Active</{reason}_sw_thermal_slowdown>",
            f"\t\t</{reason}s>",
            "\t\t<fb_memory_usage>",
            f"\t\t\t<total>{total} MiB</total>",
            f"\t\t\t<reserved>{g['reserved']} MiB</reserved>",
            f"\t\t\t<used>{g['used']} MiB</used>",
            f"\t\t\t<free>{total - g['reserved'] - g['used']} MiB</free>",
            "\t\t</fb_memory_usage>",
            "\t\t<compute_mode>Default</compute_mode>",
            f"\t\t<ecc_mode>\n\t\t\t<current_ecc>{g['ecc']}</current_ecc>\n\t\t\t<pending_ecc>{g['ecc']}</pending_ecc>\n\t\t</ecc_mode>",
            "\t\t<temperature>",
            f"\t\t\t<gpu_temp>{_c(g['temp'])}</gpu_temp>",
            f"\t\t\t<gpu_temp_max_threshold>{_c(g['shutdown'])}</gpu_temp_max_threshold>",
            f"\t\t\t<gpu_temp_slow_threshold>{_c(g['slowdown'])}</gpu_temp_slow_threshold>",
            "\t\t</temperature>",
        ]
        if new_power:
            x += [
                "\t\t<gpu_power_readings>",
                *(
                    [
                        f"\t\t\t<average_power_draw>{_w(g['draw'])}</average_power_draw>",
                        f"\t\t\t<instant_power_draw>{_w(g['draw'])}</instant_power_draw>",
                    ]
                    if events
                    else [f"\t\t\t<power_draw>{_w(g['draw'])}</power_draw>"]
                ),
                f"\t\t\t<current_power_limit>{_w(cur)}</current_power_limit>",
                f"\t\t\t<requested_power_limit>{_w(req)}</requested_power_limit>",
                f"\t\t\t<default_power_limit>{_w(default)}</default_power_limit>",
                f"\t\t\t<min_power_limit>{_w(lo)}</min_power_limit>",
                f"\t\t\t<max_power_limit>{_w(hi)}</max_power_limit>",
                "\t\t</gpu_power_readings>",
            ]
        else:
            x += [
                "\t\t<power_readings>",
                f"\t\t\t<power_management>{'Supported' if req is not None else NA}</power_management>",
                f"\t\t\t<power_draw>{_w(g['draw'])}</power_draw>",
                f"\t\t\t<power_limit>{_w(req)}</power_limit>",
                f"\t\t\t<default_power_limit>{_w(default)}</default_power_limit>",
                f"\t\t\t<enforced_power_limit>{_w(cur)}</enforced_power_limit>",
                f"\t\t\t<min_power_limit>{_w(lo)}</min_power_limit>",
                f"\t\t\t<max_power_limit>{_w(hi)}</max_power_limit>",
                "\t\t</power_readings>",
            ]
        x += [
            f"\t\t<max_clocks>\n\t\t\t<graphics_clock>{g['sm']} MHz</graphics_clock>\n\t\t\t<sm_clock>{g['sm']} MHz</sm_clock>",
            f"\t\t\t<mem_clock>{g['mem']} MHz</mem_clock>\n\t\t</max_clocks>",
            "\t\t<processes>\n\t\t</processes>",
            "\t</gpu>",
        ]
    x.append("</nvidia_smi_log>")
    return "\n".join(x) + "\n"


# -- the readings ----------------------------------------------------------------------------------------

H100 = dict(vram=81559, reserved=480, power=(700, 700, 700, 200, 700), sm=1980, mem=2619, pcie=(5, 5), ecc="Enabled")
A100_80 = dict(vram=81920, reserved=0, sm=1410, mem=1593, pcie=(4, 4), ecc="Enabled", temp=30, slowdown=89, shutdown=92)


def readings() -> dict[str, str]:
    return {
        "rtx4090-535.qx.xml": xml_reading(
            "535.86.05",
            "12.2",
            [
                gpu(
                    "NVIDIA GeForce RTX 4090",
                    "Ada Lovelace",
                    vram=24564,
                    reserved=346,
                    used=2,
                    power=(450, 450, 450, 10, 600),
                    draw=21.5,
                    pcie=(3, 1),
                    sm=3120,
                    mem=10501,
                    slowdown=87,
                    shutdown=92,
                )
            ],
            schema="v12",
        ),
        "rtx4090x8-550.q.txt": text_reading(
            "550.127.05",
            "12.4",
            [
                gpu(
                    "NVIDIA GeForce RTX 4090",
                    "Ada Lovelace",
                    vram=24564,
                    reserved=346,
                    power=(450, 450, 450, 150, 450),
                    draw=18.0 + i,
                    sm=3120,
                    mem=10501,
                    slowdown=87,
                    shutdown=92,
                    bus=0x18 + i * 0x10,
                    display=False,
                )
                for i in range(8)
            ],
        ),
        "rtx4080super-595.q.txt": text_reading(
            "595.71.05",
            "13.2",
            [
                gpu(
                    "NVIDIA GeForce RTX 4080 SUPER",
                    "Ada Lovelace",
                    vram=16376,
                    reserved=274,
                    power=(320, 320, 320, 150, 400),
                    draw=9.4,
                    persistence=False,
                    sm=3105,
                    mem=11501,
                    slowdown=87,
                    shutdown=90,
                )
            ],
        ),
        "rtx4070laptop-566.q.txt": "PS C:\\Users\\someone> nvidia-smi -q\n"
        + text_reading(
            "566.36",
            "12.7",
            [
                gpu(
                    "NVIDIA GeForce RTX 4070 Laptop GPU",
                    "Ada Lovelace",
                    vram=8188,
                    reserved=166,
                    power=(61.24, None, 55, 5, 140),
                    draw=2.1,
                    temp=45,
                    tlimit=(42, -5, -2),
                    sm=3105,
                    mem=8001,
                    display=True,
                )
            ],
        ),
        "rtx3060laptop-515.qx.xml": xml_reading(
            "515.65.01",
            "11.7",
            [
                gpu(
                    "NVIDIA GeForce RTX 3060 Laptop GPU",
                    "Ampere",
                    vram=6144,
                    power=(None, None, None, None, None),
                    draw=8.70,
                    persistence=False,
                    sm=2100,
                    mem=7001,
                    slowdown=102,
                    shutdown=105,
                    temp=48,
                )
            ],
            schema="v11",
        ),
        "h100-590.q.txt": text_reading(
            "590.48.01",
            "13.1",
            [
                gpu(
                    "NVIDIA H100 80GB HBM3",
                    "Hopper",
                    draw=69.8,
                    pstate="P0",
                    temp=31,
                    tlimit=(56, -8, -2),
                    mig="Disabled",
                    **H100,
                )
            ],
        ),
        "h100mig-590.q.txt": text_reading(
            "590.48.01",
            "13.1",
            [
                gpu(
                    "NVIDIA H100 80GB HBM3",
                    "Hopper",
                    draw=88.1,
                    pstate="P0",
                    temp=33,
                    tlimit=(54, -8, -2),
                    mig="Enabled",
                    **H100,
                )
            ],
        ),
        "a100mig-510.qx.xml": xml_reading(
            "510.47.03",
            "11.6",
            [
                gpu(
                    "NVIDIA A100-SXM4-40GB",
                    "Ampere",
                    vram=40960,
                    reserved=605,
                    used=38,
                    power=(400, 400, 400, 100, 400),
                    draw=66.92,
                    persistence=False,
                    pstate="P0",
                    sm=1410,
                    mem=1215,
                    ecc="Enabled",
                    mig="Enabled",
                    temp=36,
                    slowdown=89,
                    shutdown=92,
                    idle=False,
                )
            ],
            schema="v11",
        ),
        "a100-535.qx.xml": xml_reading(
            "535.54.03",
            "12.2",
            [
                gpu(
                    "NVIDIA A100-SXM4-80GB",
                    "Ampere",
                    power=(500, 500, 500, 100, 500),
                    draw=61.0,
                    persistence=False,
                    pstate="P0",
                    mig="Enabled",
                    **A100_80,
                )
            ],
            schema="v12",
        ).replace("<attached_gpus>1<", "<attached_gpus>4<"),  # trimmed, as published
        "l40s-595.q.txt": text_reading(
            "595.80",
            "13.2",
            [
                gpu(
                    "NVIDIA L40S",
                    "Ada Lovelace",
                    vram=46068,
                    reserved=585,
                    power=(350, 350, 350, 100, 350),
                    draw=183.0,
                    persistence=False,
                    pstate="P0",
                    sm=2520,
                    mem=9001,
                    ecc="Enabled",
                    slowdown=88,
                    shutdown=93,
                )
            ],
        ),
        "l4-550.q.txt": text_reading(
            "550.90.07",
            "12.4",
            [
                gpu(
                    "NVIDIA L4",
                    "Ada Lovelace",
                    vram=23034,
                    reserved=433,
                    power=(72, 72, 72, 40, 72),
                    draw=16.2,
                    sm=2040,
                    mem=6251,
                    ecc="Enabled",
                    slowdown=92,
                    shutdown=96,
                    temp=38,
                )
            ],
        ),
        "rtx3090-525.qx.xml": xml_reading(
            "525.147.05",
            "12.0",
            [
                gpu(
                    "NVIDIA GeForce RTX 3090",
                    "Ampere",
                    vram=24576,
                    reserved=316,
                    power=(200, 200, 350, 100, 375),
                    draw=27.23,
                    slowdown=95,
                    shutdown=98,
                    temp=37,
                    pcie=(4, 1),
                )
            ],
            schema="v12",
        ),
        "rtx3090-590.qx.xml": xml_reading(
            "590.44.01",
            "13.1",
            [
                gpu(
                    "NVIDIA GeForce RTX 3090",
                    "Ampere",
                    vram=24576,
                    reserved=450,
                    used=7,
                    power=(350, 350, 350, 100, 480),
                    draw=35.06,
                    slowdown=95,
                    shutdown=98,
                    temp=32,
                    pcie=(4, 1),
                    display=True,
                )
            ],
            schema="v13",
        ),
        "rtx2080x2-590.qx.xml": xml_reading(
            "590.44.01",
            "13.1",
            [
                gpu(
                    "NVIDIA GeForce RTX 2080",
                    "Turing",
                    vram=8192,
                    reserved=190,
                    power=(215, 215, 215, 105, 240),
                    draw=12.0 + i,
                    sm=2100,
                    mem=7000,
                    slowdown=89,
                    shutdown=94,
                    bus=1 + i * 2,
                    pcie=(3, 1),
                )
                for i in range(2)
            ],
            schema="v13",
        ).replace(  # both GPUs carry the same placeholder UUID, as published
            "GPU-00000000-0000-0000-0000-000000000001", "GPU-00000000-0000-0000-0000-000000000000"
        ),
    }


if __name__ == "__main__":
    for name, text in readings().items():
        (HERE / name).write_text(text, encoding="utf-8")
        print(f"wrote {name}")
