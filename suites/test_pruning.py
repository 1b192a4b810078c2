"""C5 — pruning attention to the effective pathways keeps accuracy; random pruning of as many edges does not."""

import pytest


@pytest.mark.flowcheck_claim("pruning_edges_kept")
def test_pruning_edges_kept(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("pruning_parity")
def test_pruning_parity(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("random_pruning_hurts")
def test_pruning_random_hurts(flow_case, flow_claim):
    flow_claim()
