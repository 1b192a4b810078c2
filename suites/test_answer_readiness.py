"""C4 — the answer becomes ready right after the middle layers, once video information reached the question."""

import pytest


@pytest.mark.flowcheck_claim("answer_ready_after_integration")
def test_answer_ready_after_integration(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("true_option_beats_false")
def test_answer_true_option_beats_false(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("answer_decided_after_middle")
def test_answer_decided_after_middle(flow_case, flow_claim):
    flow_claim()
