"""The flowcheck pytest plugin (registered through the `pytest11` entry point).

Options, the parametrization of claim tests over models x tasks, a session fixture that computes
each model's analyses once, xdist wiring (one worker per GPU, one group per model) and the report
written by the controller at the end of the run. Import-light: torch loads only when tests run.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from flowcheck.options import OPTIONS, OptionError

CLAIM_MARK = "flowcheck_claim"
PROPERTY = "flowcheck"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowcheck", "flowcheck: information-flow claims for video LLMs")
    for spec in OPTIONS:
        kwargs = {"dest": f"flow_{spec.name}", "default": None, "help": f"{spec.help} (env {spec.env})"}
        if spec.repeatable:
            kwargs["action"] = "append"
        if spec.metavar:
            kwargs["metavar"] = spec.metavar
        group.addoption(spec.flag, **kwargs)
    group.addoption(
        "--flow-claims",
        action="append",
        default=[],
        metavar="FILE",
        help="extra claims registry file(s) (TOML): per-model thresholds and expected failures",
    )
    group.addoption(
        "--flow-baseline",
        default=None,
        metavar="MODEL",
        help="gating: compare each model's numbers with the snapshot recorded for MODEL",
    )
    group.addoption("--flow-no-report", action="store_true", help="do not write reports/<run>/")


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{CLAIM_MARK}(name): a flowcheck claim test, parametrized over models x tasks")
    if _is_worker(config):
        _pin_worker_device(config)
    else:
        config.pluginmanager.register(FlowReporter(config), "flowcheck-reporter")


def _pin_worker_device(config: pytest.Config) -> None:
    """One GPU per xdist worker: set CUDA_VISIBLE_DEVICES before anything initialises CUDA."""
    if "CUDA_VISIBLE_DEVICES" in os.environ and os.environ.get("FLOWCHECK_PINNED"):
        return
    worker = config.workerinput.get("workerid", "gw0")
    count = int(config.workerinput.get("workercount", 1))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = visible.split(",") if visible else [str(i) for i in range(_gpu_count())]
    if devices:
        index = int(worker.removeprefix("gw")) % len(devices)
        os.environ["CUDA_VISIBLE_DEVICES"] = devices[index]
        os.environ["FLOWCHECK_PINNED"] = "1"
    elif count > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // count)))


def _gpu_count() -> int:
    """Visible NVIDIA GPUs, counted without initialising CUDA in this process."""
    try:
        return len([d for d in os.listdir("/proc/driver/nvidia/gpus")])
    except OSError:
        return 0


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: one worker per GPU; on CPU, two per model at most, bounded by the cores."""
    gpus = _gpu_count()
    if gpus:
        return gpus
    return max(1, min(os.cpu_count() or 1, 2))


# ----------------------------------------------------------------------------------------------
# The session: options, registry, datasets, models


def flow_options(config: pytest.Config):
    if not hasattr(config, "_flowcheck_options"):
        from flowcheck.options import resolve_for

        cli = {spec.name: getattr(config.option, f"flow_{spec.name}", None) for spec in OPTIONS}
        try:
            config._flowcheck_options = resolve_for(Path(config.rootpath), cli)
        except OptionError as err:
            raise pytest.UsageError(f"flowcheck: {err}") from None
    return config._flowcheck_options


def flow_session(config: pytest.Config):
    if not hasattr(config, "_flowcheck_session"):
        from flowcheck.claims import RegistryError, load_registry
        from flowcheck.session import FlowSession

        extra = [Path(config.rootpath) / "fixtures" / "claims.toml"]
        extra = [p for p in extra if p.exists()] + [Path(p) for p in config.getoption("flow_claims")]
        try:
            registry = load_registry(extra)
        except RegistryError as err:
            raise pytest.UsageError(f"flowcheck: {err}") from None
        session = FlowSession(flow_options(config), registry)
        _validate(session)
        config._flowcheck_session = session
    return config._flowcheck_session


def _validate(session) -> None:
    """Fail fast, with the reason, on models that cannot be opened and datasets that cannot be read."""
    from flowcheck.data.report import DataError
    from flowcheck.models.base import AdapterError

    for model in session.options.models:
        try:
            session.handle(model)
        except AdapterError as err:
            raise pytest.UsageError(f"flowcheck: --flow-model {model}: {err}") from None
    for dataset in session.options.data:
        try:
            session.dataset(dataset)
        except DataError as err:
            raise pytest.UsageError(f"flowcheck: --flow-data {dataset}: {err}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "flow_case" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker(CLAIM_MARK)
    session = flow_session(metafunc.config)
    if marker is None:  # e.g. the gating test: one case per model
        cases = sorted({c.model: c for c in session.cases("dataset", "all")}.values())
        params = [
            pytest.param(c, id=c.test_id(False).rsplit("-all", 1)[0], marks=pytest.mark.xdist_group(c.model))
            for c in cases
        ]
        metafunc.parametrize("flow_case", params)
        return
    claim = marker.args[0]
    if claim not in session.registry.claims:
        raise pytest.UsageError(f"flowcheck: unknown claim {claim!r} in {metafunc.definition.nodeid}")
    spec = session.registry.claims[claim]
    several = len(session.options.data) > 1
    params = []
    for case in session.cases(spec.scope, spec.tasks):
        if not session.in_shard(case):
            continue
        marks = [pytest.mark.xdist_group(case.model)]
        reason = session.registry.xfail_reason(claim, case.model, case.task)
        if reason:
            marks.append(pytest.mark.xfail(reason=reason, strict=True))
        params.append(pytest.param(case, id=case.test_id(several), marks=marks))
    metafunc.parametrize("flow_case", params)


@pytest.fixture(scope="session")
def flow(request: pytest.FixtureRequest):
    """The session's FlowSession (datasets, models, cached results)."""
    return flow_session(request.config)


@pytest.fixture
def flow_claim(request: pytest.FixtureRequest, flow):
    """Evaluate the test's claim on its case, record the measured values, and fail with them if it does not hold."""
    from flowcheck.claims import MissingResult, evaluate, evaluate_video_vs_image

    marker = request.node.get_closest_marker(CLAIM_MARK)
    claim = marker.args[0]
    case = request.getfixturevalue("flow_case")

    def check():
        try:
            if claim == "cross_frame_video_vs_image":
                image = flow.registry.model_setting(case.model, "image_model")
                if not image:
                    pytest.skip(
                        f'no paired image model is registered for {case.model} ([models."{case.model}"] image_model)'
                    )
                from flowcheck.session import Case

                spec = flow.registry.claims[claim]
                result = evaluate_video_vs_image(
                    spec,
                    flow.summary(case),
                    flow.summary(Case(image, case.dataset, case.task)),
                    flow.registry.thresholds(claim, case.model),
                )
            else:
                result = evaluate(flow.registry, claim, flow.summary(case))
        except MissingResult as err:
            request.node.user_properties.append(
                (
                    PROPERTY,
                    json.dumps(
                        {
                            "claim": claim,
                            "model": case.model,
                            "dataset": case.dataset,
                            "task": case.task,
                            "passed": False,
                            "measured": {},
                            "message": str(err),
                        }
                    ),
                )
            )
            pytest.fail(f"{claim} cannot be evaluated: {err}", pytrace=False)
        payload = {**result.to_dict(), "dataset": case.dataset}
        request.node.user_properties.append((PROPERTY, json.dumps(payload, default=str)))
        if not result.passed:
            pytest.fail(result.message, pytrace=False)
        return result

    return check


# ----------------------------------------------------------------------------------------------
# Report: written once, by the controller


class FlowReporter:
    """Collects the claims' measured values from test reports (also from xdist workers) and writes the report."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.entries: list[dict] = []
        self.started = time.time()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == PROPERTY and report.when == "call":
                entry = json.loads(value)
                xfailed = hasattr(report, "wasxfail") and report.outcome == "skipped"
                entry["outcome"] = "xfailed" if xfailed else report.outcome
                entry["xfail_reason"] = getattr(report, "wasxfail", "") or ""
                entry["nodeid"] = report.nodeid
                self.entries.append(entry)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.entries or self.config.getoption("flow_no_report"):
            return
        from flowcheck.report.writer import write_report

        try:
            path, line = write_report(flow_session(self.config), self.entries, started=self.started)
        except Exception as err:  # the report must never hide the test results
            terminalreporter.write_line(f"flowcheck: could not write the report: {type(err).__name__}: {err}", red=True)
            return
        terminalreporter.write_line(f"flowcheck: {line} -> {path}")
