"""Typer command-line apps `subpt` and `gradflow`."""
