"""The machinery under ``godel do``: task worktrees, gates, overlap detection and merging.

Everything here runs git and shell commands as asyncio subprocesses, so it never blocks
the event loop. It knows nothing of agents or the store: ``godel do``
(``core/engine/doruns.py``) drives it.
"""
