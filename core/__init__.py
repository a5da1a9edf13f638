"""Godel's engine: everything except the Textual console.

This package must never import ``textual`` or ``godel_tui`` (checked by
``tests/unit/test_import_hygiene.py`` and the import-linter contract in
``pyproject.toml``), so the same engine serves the CLI, the daemon, headless runs
and the API.
"""

__version__ = "0.1.0"
