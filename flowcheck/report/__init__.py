"""Markdown reports: run metadata, the claims table, the paper's tables and figures, results.json."""
