"""Which GPUs a run may use: ``CUDA_VISIBLE_DEVICES`` read as CUDA reads it, without initialising CUDA.

CUDA's rule (CUDA C Programming Guide, "CUDA Environment Variables"): a comma-separated list of
device indices or UUIDs (``GPU-...``, ``MIG-...``); only the devices listed are visible, in that
order, and an invalid entry (a negative or out-of-range index, anything else) ends the list, so
``CUDA_VISIBLE_DEVICES=-1`` or an empty value hides every device. Unset, every device is visible.
"""

from __future__ import annotations

import os


def physical_gpu_count() -> int:
    """NVIDIA GPUs on this machine, counted from the driver's /proc entries (0 without the driver)."""
    try:
        return len(os.listdir("/proc/driver/nvidia/gpus"))
    except OSError:
        return 0


def visible_devices(cuda_visible_devices: str | None, physical: int) -> list[str]:
    """The entries of `cuda_visible_devices` CUDA would expose on a machine with `physical` GPUs, in order.

    Returns device indices as strings (or UUIDs as given); a repeated entry is kept once.
    """
    if cuda_visible_devices is None:
        return [str(i) for i in range(physical)]
    out: list[str] = []
    for raw in cuda_visible_devices.split(","):
        item = raw.strip()
        if item.startswith(("GPU-", "MIG-")):
            entry = item
        elif item.isdigit() and int(item) < physical:
            entry = str(int(item))
        else:
            break
        if entry not in out:
            out.append(entry)
    return out if physical else []


def visible_gpus(environ: dict[str, str] | None = None, physical: int | None = None) -> list[str]:
    """`visible_devices` of this process's environment and machine."""
    environ = os.environ if environ is None else environ
    return visible_devices(environ.get("CUDA_VISIBLE_DEVICES"), physical_gpu_count() if physical is None else physical)


def worker_device(worker_index: int, devices: list[str]) -> str | None:
    """The device an xdist worker is pinned to: the visible devices in turn (None without GPUs)."""
    return devices[worker_index % len(devices)] if devices else None
