"""`-n auto` and worker pinning use the GPUs CUDA_VISIBLE_DEVICES makes visible, read as CUDA reads it."""

from __future__ import annotations

import pytest

from flowcheck import devices, pytest_plugin
from flowcheck.devices import visible_devices, worker_device


@pytest.mark.parametrize(
    ("value", "physical", "expected"),
    [
        (None, 8, [str(i) for i in range(8)]),
        ("1", 8, ["1"]),  # used to start 8 workers on an 8-GPU node
        ("3,1", 8, ["3", "1"]),
        ("0,9,2", 8, ["0"]),  # an out-of-range index ends the list
        ("-1", 8, []),
        ("", 8, []),
        ("2, 2,5", 8, ["2", "5"]),
        ("GPU-8a1b,3", 4, ["GPU-8a1b", "3"]),
        ("1", 0, []),
    ],
)
def test_visible_devices_follow_cuda(value, physical, expected):
    assert visible_devices(value, physical) == expected


def test_auto_workers_and_pinning_use_only_visible_gpus(monkeypatch):
    monkeypatch.setattr(devices, "physical_gpu_count", lambda: 8)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert pytest_plugin.pytest_xdist_auto_num_workers(None) == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    assert pytest_plugin.pytest_xdist_auto_num_workers(None) == 2
    gpus = devices.visible_gpus()
    assert [worker_device(i, gpus) for i in range(3)] == ["4", "6", "4"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert pytest_plugin.pytest_xdist_auto_num_workers(None) == 8
    monkeypatch.setattr(devices, "physical_gpu_count", lambda: 0)
    assert pytest_plugin.pytest_xdist_auto_num_workers(None) <= 2
    assert worker_device(0, []) is None
