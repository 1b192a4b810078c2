"""The `flowcheck` command line."""

from __future__ import annotations

import json

import pytest

from flowcheck.cli import COMMANDS, main


def test_edges_json_lists_the_four_paper_models_with_their_counts(capsys):
    assert main(["edges", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in rows] == [
        "LLaVA-NeXT-7B-Video-FT",
        "LLaVA-NeXT-13B-Video-FT",
        "Mini-InternVL-4B-Video-FT",
        "VideoLLaMA3-7B",
    ]
    for row in rows:
        assert {"model", "full_edges", "effective_edges", "kept_fraction", "paper_kept_fraction"} <= set(row)
        assert row["effective_edges"] < row["full_edges"]
        assert row["random_edges"] == row["effective_edges"]
        assert abs(row["kept_fraction"] - row["paper_kept_fraction"]) <= 0.02


def test_edges_table_names_the_paper_values(capsys):
    assert main(["edges"]) == 0
    out = capsys.readouterr().out
    assert "LLaVA-NeXT-7B-Video-FT" in out and "(0.42)" in out


def test_demo_prints_a_row_per_condition(capsys):
    assert main(["demo", "--samples", "1", "--layers", "4"]) == 0
    out = capsys.readouterr().out
    for name in ("cross_frame", "video->question", "question->last", "video->true_option"):
        assert name in out


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_help_text_renders(command, capsys):
    """argparse %-formats help strings: an option's literal % must not crash `--help` (`flowcheck X --help`)."""
    with pytest.raises(SystemExit) as done:
        main([command, "--help"] if command else ["--help"])
    assert done.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_pytest_help_renders_the_plugin_options():
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--help", "-p", "no:cacheprovider"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert "--flow-curve-metric" in out.stdout and "(the paper's, in %)" in out.stdout
