"""The claims suites run on the flowcheck plugin's fixtures (`flow`, `flow_case`, `flow_claim`)."""

import pytest

from flowcheck.pytest_plugin import check_run


def pytest_sessionstart(session: pytest.Session) -> None:
    # Bad options, models and datasets are reported once, before any test is collected.
    check_run(session.config)
