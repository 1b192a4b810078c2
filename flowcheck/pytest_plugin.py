"""The flowcheck pytest plugin (registered through the `pytest11` entry point).

Options, the parametrization of claim tests over models x tasks, a session fixture that computes
each model's analyses once, xdist wiring (one worker per GPU, one group per model) and the report
written by the controller at the end of the run. Import-light: torch loads only when tests run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import time
from pathlib import Path
from typing import NoReturn

import pytest

from flowcheck.options import OPTIONS, OptionError

CLAIM_MARK = "flowcheck_claim"
PROPERTY = "flowcheck"
CASE_PROPERTY = "flowcheck-case"
GATE_PROPERTY = "flowcheck-gate"  # a gating test's result (`flowcheck.gating.GateResult.to_dict`), for the report
# pytest prints an expected failure's reason in its summary: it is the registry's text (values measured when it was
# registered), not this run's measurement (which is in the failure message and the report)
REGISTERED = "registered expected failure (the registry's reason, not this run's values): "


class ClaimNotHeld(pytest.fail.Exception):
    """A claim that measurably does not hold on a case: the one failure a registry's expected failure absorbs."""


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flowcheck", "flowcheck: information-flow claims for video LLMs")
    for spec in OPTIONS:
        kwargs = {"dest": f"flow_{spec.name}", "default": None, "help": f"{spec.argparse_help} (env {spec.env})"}
        if spec.switch:
            kwargs["action"] = "store_const"
            kwargs["const"] = True
        elif spec.repeatable:
            kwargs["action"] = "append"
        if spec.metavar and not spec.switch:
            kwargs["metavar"] = spec.metavar
        group.addoption(spec.flag, **kwargs)


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{CLAIM_MARK}(name): a flowcheck claim test, parametrized over models x tasks")
    baseline = getattr(config.option, "flow_baseline", None) or os.environ.get("FLOWCHECK_BASELINE")
    if baseline:
        if getattr(config.option, "update_snapshots", False):
            # refused here, before syrupy runs: a failing test would leave the model's own baseline "unused", and
            # syrupy's update deletes unused snapshots
            _usage_error(
                "flowcheck: --snapshot-update with --flow-baseline would overwrite or delete recorded baselines; "
                "record a baseline without --flow-baseline "
                "(pytest suites/test_gating.py --flow-model M --snapshot-update)"
            )
        # gating against another baseline leaves the model's own recorded baseline unused: not a failure
        config.option.warn_unused_snapshots = True
    if _is_worker(config):
        _pin_worker_device(config)
    else:
        config.pluginmanager.register(FlowReporter(config), "flowcheck-reporter")
        config.pluginmanager.register(ProgressDisplay(config), PROGRESS_PLUGIN)


def _pin_worker_device(config: pytest.Config) -> None:
    """One visible GPU per xdist worker: set CUDA_VISIBLE_DEVICES before anything initialises CUDA."""
    from flowcheck.devices import visible_gpus, worker_device

    if os.environ.get("FLOWCHECK_PINNED"):
        return
    worker = config.workerinput.get("workerid", "gw0")
    count = int(config.workerinput.get("workercount", 1))
    device = worker_device(int(worker.removeprefix("gw")), visible_gpus())
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device
        os.environ["FLOWCHECK_PINNED"] = "1"
    elif count > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // count)))


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: one worker per visible GPU; on CPU, two at most, bounded by the cores."""
    from flowcheck.devices import visible_gpus

    gpus = visible_gpus()
    if gpus:
        return len(gpus)
    return max(1, min(os.cpu_count() or 1, 2))


# ----------------------------------------------------------------------------------------------
# The session: options, registry, datasets, models


def flow_options(config: pytest.Config):
    if not hasattr(config, "_flowcheck_options"):
        from flowcheck.options import resolve_for

        cli = {spec.name: getattr(config.option, f"flow_{spec.name}", None) for spec in OPTIONS}
        try:
            options = resolve_for(Path(config.rootpath), cli)
        except OptionError as err:
            _usage_error(f"flowcheck: {err}")
        if not options.models:
            _usage_error("flowcheck: no model given; name one with --flow-model (e.g. --flow-model tiny-video-ft)")
        config._flowcheck_options = options
    return config._flowcheck_options


def flow_session(config: pytest.Config):
    if not hasattr(config, "_flowcheck_session"):
        from flowcheck import bundled
        from flowcheck.claims import RegistryError, load_registry
        from flowcheck.models.identity import ModelNameError
        from flowcheck.session import FlowSession

        options = flow_options(config)
        extra = [bundled.claims_file()] + [Path(p) for p in options.claims]
        try:
            registry = load_registry(extra)
            session = FlowSession(options, registry)
        except (RegistryError, ModelNameError) as err:
            _usage_error(f"flowcheck: {err}")
        _validate(session)
        session.progress = progress_sink(config)
        config._flowcheck_session = session
    return config._flowcheck_session


def _validate(session) -> None:
    """Fail fast, with the reason, on models that cannot be opened and datasets that cannot be read."""
    from flowcheck.data.report import DataError
    from flowcheck.models.base import AdapterError
    from flowcheck.models.registry import adapter_class

    for model in session.models:
        try:
            handle = session.handle(model)
            adapter_class(handle.config, handle.forced_family, handle.path)
        except AdapterError as err:
            _usage_error(f"flowcheck: --flow-model {session.source(model)}: {err}")
    for dataset in session.options.data:
        try:
            samples = session.dataset(dataset)
        except DataError as err:
            _usage_error(f"flowcheck: --flow-data {dataset}: {err}")
        if not samples:
            report = session.reports[dataset]
            reasons = "; ".join(str(s) for s in report.skipped[:3]) or "no annotation entry for the chosen tasks"
            _usage_error(
                f"flowcheck: --flow-data {dataset}: no sample could be loaded from {report.root} "
                f"({len(report.skipped)} skipped: {reasons})"
            )
    from flowcheck.analyses.base import analyses, check_settings, selected
    from flowcheck.claims import RegistryError

    known = analyses()
    unknown = [name for name in session.options.values.get("analyses") or [] if name not in known]
    if unknown:
        _usage_error(
            f"flowcheck: --flow-analyses: unknown analysis {', '.join(map(repr, unknown))}; registered: "
            f"{', '.join(sorted(known))}"
        )
    running = [cls.name for cls in selected(None)] + list(session.options.values.get("analyses") or [])
    for model in session.models:
        try:  # --flow-setting values against the analyses and each model's depth, before any test runs
            check_settings(session.options.values.get("setting") or {}, running, session.handle(model).num_layers)
        except ValueError as err:
            _usage_error(f"flowcheck: --flow-setting: {err}")
        try:  # a --flow-pathway route spec against each model's depth, before any test runs
            session.pruning_settings(model, session.handle(model).num_layers)
        except RegistryError as err:
            _usage_error(
                f"flowcheck: {err} (or --flow-pathway discovered / paper-scaled), for model {session.source(model)}"
            )
    import torch

    try:
        torch.device(session.options.device)
    except (RuntimeError, ValueError) as err:
        _usage_error(f"flowcheck: --flow-device {session.options.device!r}: {err} (e.g. cpu, cuda, cuda:1, mps)")


def _usage_error(message: str) -> NoReturn:
    """A usage error: pytest prints ``ERROR: <message>`` once, without a traceback, and exits with code 4."""
    raise pytest.UsageError(message)


def check_run(config: pytest.Config) -> None:
    """Resolve the options, the models' names and configs and the datasets before any test is collected (called
    from the suites' ``pytest_sessionstart``), so that a usage error is reported once, without a traceback."""
    flow_session(config)


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
            # Only a claim that measurably does not hold is expected; any other exception stays an error.
            # pytest shows this text in its own summary: say that it is the registry's (values at registration),
            # not this run's measurement (which is in the failure message and the report)
            marks.append(pytest.mark.xfail(reason=REGISTERED + reason, strict=True, raises=ClaimNotHeld))
        params.append(pytest.param(case, id=case.test_id(several), marks=marks))
    metafunc.parametrize("flow_case", params)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tag each claim test's report with its claim and case, so that errors are reported like results."""
    for item in items:
        marker = item.get_closest_marker(CLAIM_MARK)
        case = getattr(item, "callspec", None) and item.callspec.params.get("flow_case")
        if marker is not None and dataclasses.is_dataclass(case):
            item.user_properties.append(
                (CASE_PROPERTY, json.dumps({"claim": marker.args[0], **dataclasses.asdict(case)}))
            )


@pytest.fixture(scope="session")
def flow(request: pytest.FixtureRequest):
    """The session's FlowSession (datasets, models, cached results)."""
    return flow_session(request.config)


@pytest.fixture
def flow_claim(request: pytest.FixtureRequest, flow):
    """Evaluate the test's claim on its case and record the outcome: a claim that does not hold raises
    ClaimNotHeld with the measured values; one that cannot be evaluated is skipped with the reason."""
    from flowcheck.claims import NotEvaluable

    claim = request.node.get_closest_marker(CLAIM_MARK).args[0]
    case = request.getfixturevalue("flow_case")

    def check():
        try:
            result = flow.evaluate(claim, case)
        except NotEvaluable as err:
            message = f"{claim} not evaluable for {case.model} on {case.task}: {err}"
            request.node.user_properties.append((PROPERTY, json.dumps({"evaluable": False, "message": message})))
            pytest.skip(message)
        request.node.user_properties.append((PROPERTY, json.dumps({"evaluable": True, **result.to_dict()})))
        if not result.passed:
            raise ClaimNotHeld(result.message, pytrace=False)
        return result

    return check


# ----------------------------------------------------------------------------------------------
# Live progress while results are computed (flowcheck.progress)

PROGRESS_PLUGIN = "flowcheck-progress"
PROGRESS_DIR = "flowcheck_progress_dir"  # key of the workers' progress folder in xdist's workerinput


def progress_silent(config: pytest.Config) -> bool:
    """No progress with -q -q (verbosity <= -2)."""
    from flowcheck.progress import SILENT_VERBOSITY

    return (config.getoption("verbose", 0) or 0) <= SILENT_VERBOSITY


def progress_sink(config: pytest.Config):
    """The sink the session's runner reports to: an xdist worker writes its progress file (the controller shows
    it); a serial run writes to the terminal; the xdist controller (which computes nothing while tests run) and
    -q -q show nothing. Every sink is guarded: a display error is one warning, never a failed test."""
    from flowcheck.progress import FileProgress, Guarded, LiveProgress, NullProgress

    if progress_silent(config):
        return NullProgress()
    if _is_worker(config):
        folder = config.workerinput.get(PROGRESS_DIR)
        if not folder:
            return NullProgress()
        worker = str(config.workerinput.get("workerid", "gw0"))
        return Guarded(FileProgress(Path(folder) / f"{worker}.json", worker))
    display = config.pluginmanager.get_plugin(PROGRESS_PLUGIN)
    lines = display.terminal_lines() if display is not None else None
    if lines is None or config.pluginmanager.has_plugin("dsession"):
        return NullProgress()
    return Guarded(LiveProgress(lines))


class ProgressDisplay:
    """The controller's progress display: the terminal lines a serial run's sink writes to, and under xdist the
    folder of the workers' progress files (handed to each worker through ``workerinput``) with the `WorkerBoard`
    thread that shows them. Before pytest writes about a test, the terminal is given back (`TerminalLines.restore`)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.lines = None
        self.folder: Path | None = None
        self.board = None

    def terminal_lines(self):
        """The `TerminalLines` of pytest's terminal reporter (None without one, e.g. ``-p no:terminal``)."""
        if self.lines is None:
            from flowcheck.progress import TerminalLines

            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                capture = self.config.pluginmanager.get_plugin("capturemanager")
                self.lines = TerminalLines(reporter, capture)
        return self.lines

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        """xdist: give each worker the run's progress folder; the first one starts the board."""
        if progress_silent(self.config):
            return
        try:
            if self.folder is None:
                import tempfile

                from flowcheck.progress import WorkerBoard

                lines = self.terminal_lines()
                if lines is None:
                    return
                self.folder = Path(tempfile.mkdtemp(prefix="flowcheck-progress-"))
                self.board = WorkerBoard(self.folder, lines)
                self.board.run()
            node.workerinput[PROGRESS_DIR] = str(self.folder)
        except Exception as err:  # progress must never break a run
            import warnings

            from flowcheck.progress import ProgressWarning

            warnings.warn(f"flowcheck: no progress display for the workers ({err})", ProgressWarning, stacklevel=1)

    def _end_live_line(self):
        lines = self.lines
        if lines is None:
            return (yield)
        with lines.lock:
            with contextlib.suppress(Exception):  # a broken display is the sink's to report; the outcome is written
                lines.restore()
            return (yield)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_logstart(self, nodeid, location):
        return (yield from self._end_live_line())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_logreport(self, report):
        return (yield from self._end_live_line())

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_logfinish(self, nodeid, location):
        return (yield from self._end_live_line())

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self) -> None:
        """Show the workers' last lines before the summary."""
        if self.board is not None:
            self.board.stop()
        elif self.lines is not None:
            with contextlib.suppress(Exception):
                self.lines.close()

    def pytest_unconfigure(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


# ----------------------------------------------------------------------------------------------
# Report: written once, by the controller


class FlowReporter:
    """Collects every claim test's outcome from test reports (also from xdist workers) and writes the report."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.entries: dict[str, dict] = {}
        self.gates: dict[str, dict] = {}
        self.started = time.time()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = dict(report.user_properties)
        if GATE_PROPERTY in props and report.when == "call":
            self.gates[report.nodeid] = json.loads(props[GATE_PROPERTY])
        if CASE_PROPERTY not in props:
            return
        entry = self.entries.setdefault(report.nodeid, {**json.loads(props[CASE_PROPERTY]), "nodeid": report.nodeid})
        if PROPERTY in props:
            entry.update(json.loads(props[PROPERTY]))
        if report.when == "call" or (report.when == "setup" and not report.passed):
            entry["outcome"] = claim_outcome(report, entry)
            if entry["outcome"] == "error":
                entry["message"] = _crash_line(report)
            entry["xfail_reason"] = (getattr(report, "wasxfail", "") or "").removeprefix(REGISTERED)
        elif report.when == "teardown" and report.failed:
            entry["outcome"], entry["message"] = "error", _crash_line(report)

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not (self.entries or self.gates):
            return
        gates = [self.gates[k] for k in sorted(self.gates)]
        if flow_options(self.config).no_report:
            _gates_to_step_summary(gates)
            return
        from flowcheck.report.writer import write_report

        entries = [self.entries[k] for k in sorted(self.entries) if "outcome" in self.entries[k]]  # ran to the end
        if not (entries or gates):
            return
        try:
            session = flow_session(self.config)
            record = session.record(entries, started=self.started, gates=gates)
            path, line = write_report(record, Path(session.options.report_dir))
        except Exception as err:  # the report must never hide the test results
            terminalreporter.write_line(f"flowcheck: could not write the report: {type(err).__name__}: {err}", red=True)
            return
        terminalreporter.write_line(f"flowcheck: {line} -> {path}")
        for gate in gates:
            verdict = "refused" if gate.get("refused") else ("passed" if gate["passed"] else "FAILED")
            terminalreporter.write_line(f"flowcheck: gate {gate['model']} against {gate['baseline']}: {verdict}")
        for line in session.skipped_lines():
            terminalreporter.write_line(f"flowcheck: {line}")


def _gates_to_step_summary(gates: list[dict]) -> None:
    """Without a report (--flow-no-report), the gate tables still go to ``$GITHUB_STEP_SUMMARY`` when it is set."""
    path = os.environ.get("GITHUB_STEP_SUMMARY")
    if not (path and gates):
        return
    from flowcheck.gating.table import gate_markdown

    with open(path, "a") as fh:
        for gate in gates:
            fh.write(f"## Gate: {gate['model']} against baseline {gate['baseline']}\n\n{gate_markdown(gate)}\n")


def claim_outcome(report: pytest.TestReport, entry: dict) -> str:
    """passed / failed (the claim does not hold) / xfailed / not evaluable / skipped / error (anything else)."""
    if hasattr(report, "wasxfail") and report.skipped:
        return "xfailed"
    if report.skipped:
        return "not evaluable" if entry.get("evaluable") is False else "skipped"
    if report.passed:
        return "passed"
    if report.when == "call" and entry.get("evaluable"):
        return "unexpectedly passed" if entry.get("passed") else "failed"  # XPASS(strict) / ClaimNotHeld
    return "error"


def _crash_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return crash.message.splitlines()[0][:500] if crash.message else "error"
    return str(report.longrepr).strip().splitlines()[-1][:500] if report.longrepr else "error"
