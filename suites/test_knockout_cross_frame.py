"""C1 — temporal reasoning starts with cross-frame interactions among video tokens in early-to-middle layers."""

import pytest


@pytest.mark.flowcheck_claim("cross_frame_early")
def test_knockout_cross_frame_early(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("cross_frame_late_flat")
def test_knockout_cross_frame_late_flat(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("cross_frame_accuracy_drop")
def test_knockout_cross_frame_accuracy_drop(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("cross_frame_video_vs_image")
def test_knockout_cross_frame_video_vs_image(flow_case, flow_claim):
    flow_claim()
