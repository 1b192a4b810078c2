"""Root conftest: makes the flowcheck pytest plugin available from a source checkout.

An installed flowcheck registers its plugin through the `pytest11` entry point; a source
checkout that is not installed gets it here instead.
"""

from importlib.metadata import entry_points

if not any(ep.value == "flowcheck.pytest_plugin" for ep in entry_points(group="pytest11")):
    pytest_plugins = ["flowcheck.pytest_plugin"]
