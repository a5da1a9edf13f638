"""Screens pushed over the console: the ``:`` command line and the ``?`` help."""
