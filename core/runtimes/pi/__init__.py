"""The ``pi`` runtime: each agent is one ``pi --mode rpc`` process (the pi coding agent).

Modules, from the wire up:

* :mod:`.protocol`: JSONL framing and the parsed messages pi writes (pure);
* :mod:`.config`: the agent's pi config dir, ``models.json``/``settings.json``, argv/env;
* :mod:`.run_loop`: one exec's decisions as a pure state machine (when a run is over,
  retries, abort and timeout, usage and cost, the events and the result);
* :mod:`.agent`: the process side (pipes, commands and their answers, tool processes);
* :mod:`.runtime`: :class:`PiRuntime`, the async driver tying them together.
"""

from core.runtimes.pi.config import bundled_pi_bin, pi_command, settings_json, write_config
from core.runtimes.pi.runtime import PiRuntime

__all__ = ["PiRuntime", "bundled_pi_bin", "pi_command", "settings_json", "write_config"]
