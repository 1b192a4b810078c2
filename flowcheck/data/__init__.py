"""Benchmarks: TVBench, TOMATO, a generic TVBench-layout folder and the synthetic benchmark."""

from flowcheck.data.sample import OPTION_LETTERS, Sample

__all__ = ["OPTION_LETTERS", "Sample"]
