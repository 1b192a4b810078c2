"""benchmarks/bench_gpu.py: its code path on CPU (tiny model) and its message without a GPU."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bench_gpu


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_without_a_gpu_it_exits_with_a_clear_message(capsys):
    assert bench_gpu.run([]) == 2
    err = capsys.readouterr().err
    assert "needs a CUDA device" in err and "--device cpu --tiny" in err


def test_tiny_cpu_run_covers_every_method_and_matches_the_reference(capsys):
    assert bench_gpu.run(["--device", "cpu", "--tiny", "--samples", "1", "--authors-windows", "1"]) == 0
    out = capsys.readouterr().out
    for method in bench_gpu.METHODS:
        assert method in out
    assert "timed on 11 of 44 knockouts" in out  # (a) is an estimate from one window per condition, and says so
    diffs = re.search(r"\(a\) (\S+) on its subset, \(c\) (\S+), \(d\) (\S+) \(fp32\)", out)
    assert diffs and all(float(x) <= 1e-5 for x in diffs.groups())  # fp32: every method gives the same numbers
    last = out.strip().splitlines()[-1]
    keys = [kv.split("=")[0] for kv in last.split()]
    assert keys == [
        "ratio_authors",
        "ratio_sdpa",
        "max_abs_diff",
        "peak_mem_ratio",
        "sweep_bound_share",
        "flex_over_sdpa",
    ]
