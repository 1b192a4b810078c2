"""Subcommands of the `flowcheck` command line."""
