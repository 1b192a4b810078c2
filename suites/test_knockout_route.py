"""C2 — video information reaches the last token through the question (Video -> Question -> Last)."""

import pytest


@pytest.mark.flowcheck_claim("route_video_to_question")
def test_knockout_route_video_to_question(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("route_question_to_last")
def test_knockout_route_question_to_last(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("route_no_direct_video_to_last")
def test_knockout_route_no_direct_video_to_last(flow_case, flow_claim):
    flow_claim()


@pytest.mark.flowcheck_claim("route_last_to_last_flat")
def test_knockout_route_last_to_last_flat(flow_case, flow_claim):
    flow_claim()
