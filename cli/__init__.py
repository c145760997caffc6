"""Typer command-line apps `subpt` and `gradflow`: this folder is installed as the package `subpt._cli`."""
