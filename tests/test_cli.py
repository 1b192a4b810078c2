"""The `flowcheck` command line."""

from __future__ import annotations

import json

from flowcheck.cli import main


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
