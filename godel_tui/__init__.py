"""Godel's console: a Textual client of the daemon (``godel tui``).

It imports no engine, store or runtime code (an import-linter contract checks it): it
loads the daemon's view snapshot, applies the live event stream to the same pure views
the CLI renders (``core.views``), and sends every action as a JSON-RPC call.
"""
