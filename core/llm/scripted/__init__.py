"""A scripted model server: real HTTP on loopback, speaking the OpenAI chat-completions and
the Anthropic Messages APIs (streaming and not), answering from a script of rules.

It stands in for a real model in tests, demos and ``godel model serve``: pi and Godel's own
clients talk to it exactly as they would to a provider. Every answer is a pure function of
the request (plus per-rule request counters for ``nth_request``), so the same requests
always produce the same bytes: no clock, no random ids.

Why threads and not asyncio: the server must never block the event loop of whoever embeds
it (the daemon's, or a test's), and replies deliberately sleep (``delay_s``,
``chunk_delay_s``). A stdlib ``ThreadingHTTPServer`` in a daemon thread, one thread per
connection, keeps all of that off the loop, works the same from sync and async code, and
needs no dependency.

Script format (JSON, or ``Script(rules=[...])`` in code)::

    {"rules": [
      {"match": {"user_regex": "^run:\\s*(?P<command>.+)$", "last": "user"},
       "reply": {"tool_calls": [{"name": "bash", "arguments": {"command": "{command}"}}]}},
      {"match": {"tool_name": "bash"},
       "reply": {"text": "Ran `{tool_args.command}`; output:\\n{tool_output}"}}
    ]}

Rules are tried in order; the first whose ``match`` holds answers. Match keys (all optional,
all must hold): ``user_regex`` (searched in the latest user message text),
``system_regex`` (searched in the system prompt; a filter, its groups are not variables),
``tool_result_regex`` (searched in the latest tool result; the last message must be a tool
result), ``tool_name`` (the tool whose result is the last message), ``last`` ("user" or
"tool_result": the kind of the last message), ``model`` (exact), ``nth_request`` (1-based:
only the Nth request, counting every request so far that met the rule's other conditions,
whichever rule answered it).

Templates (reply ``text``, error ``message``/``status``, tool names and string values in
tool ``arguments``) may use ``{1}``/``{name}`` (regex groups: numbered ones from
``user_regex`` if the rule has one, else from ``tool_result_regex``; named ones from both),
``{message}`` (latest user text), ``{tool_output}``, ``{tool_name}``, ``{model}`` and
``{tool_args.KEY}`` (an argument of the assistant tool call whose result is the latest, found
in the request's history since the server keeps no conversation state). Only placeholders of
that shape are replaced; other braces are literal text.

Modules: ``script`` (the script model and loading), ``request`` (requests normalised),
``answer`` (matching and rendering), ``encoding`` (OpenAI/Anthropic JSON and SSE),
``handler`` (HTTP), ``server`` (``ScriptedServer``, ``serve_main``). Import from here.
"""

from __future__ import annotations

from core.llm.scripted.handler import RecordedRequest
from core.llm.scripted.request import ApiName, MessageKind
from core.llm.scripted.script import (
    ErrorReply,
    Match,
    Reply,
    Rule,
    Script,
    ToolCallReply,
    UsageSpec,
)
from core.llm.scripted.server import ScriptedServer, serve_main

__all__ = [
    "ApiName",
    "ErrorReply",
    "Match",
    "MessageKind",
    "RecordedRequest",
    "Reply",
    "Rule",
    "Script",
    "ScriptedServer",
    "ToolCallReply",
    "UsageSpec",
    "serve_main",
]
