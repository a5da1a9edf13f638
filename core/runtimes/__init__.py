"""Agent runtimes: the protocol (``base``), the built-in ``shell`` runtime, process helpers
shared by process-based runtimes (``process``) and the registry that finds plug-ins."""
