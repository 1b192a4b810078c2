"""C3 — temporal concepts emerge in video tokens later than spatial ones, and their alignment needs cross-frame
attention."""

import pytest


@pytest.mark.flowcheck_claim("temporal_concepts_late")
def test_logit_lens_temporal_concepts_late(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("temporal_alignment_needs_cross_frame")
def test_logit_lens_temporal_alignment_needs_cross_frame(flow_case, flow_claim):
    flow_claim()
