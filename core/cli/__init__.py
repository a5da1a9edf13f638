"""The ``godel`` command line: a thin client of the daemon (and, for ``bench``, an engine)."""
