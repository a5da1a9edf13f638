"""``[policy] deny`` through the real CLI and daemon: a bad rule is one line from
``config validate``; a refused exec is one line from ``agent exec``, and audited."""

from __future__ import annotations

import json
import re

from tests.conftest import Godel


def write_config(godel: Godel, text: str) -> None:
    (godel.cwd / ".godel").mkdir(exist_ok=True)
    (godel.cwd / ".godel" / "config.toml").write_text(text)


def test_a_bad_deny_rule_is_one_line_naming_the_entry(godel: Godel) -> None:
    write_config(godel, '[policy]\ndeny = ["rm -rf /", "re:(sudo"]\n')
    r = godel.run("config", "validate")
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"godel: {godel.cwd / '.godel' / 'config.toml'}: policy.deny[1]: deny rule "
        "'re:(sudo' is not a valid regular expression: missing ), unterminated subpattern "
        "at position 0"
    ]


def test_a_refused_exec_is_an_rpc_error_and_an_audit_entry(godel: Godel) -> None:
    write_config(godel, "[policy]\ndeny = [\"rm -rf /\", 're:^\\s*sudo\\b']\n")
    r = godel.run("agent", "spawn", "--runtime", "shell", check=True)
    m = re.search(r"(shell-[0-9a-f]{6})", r.stdout)
    assert m, r.stdout
    agent_id = m.group(1)
    marker = godel.cwd / "ran"

    r = godel.run("agent", "exec", agent_id, f"sudo touch {marker}")

    assert r.returncode != 0 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        f"godel: cannot exec on agent {agent_id}: refused by policy: matches deny rule 2 "
        r"'re:^\s*sudo\b' ([policy] deny)"
    ]
    assert not marker.exists()
    audit = json.loads(godel.run("audit", "list", "--json", "--subject", agent_id).stdout)
    (entry,) = [e for e in audit if e["action"] == "policy.violation"]
    assert entry["result"] == "refused" and entry["payload"]["rule"] == "command_deny"
    agent = json.loads(godel.run("agent", "get", agent_id, "--json", check=True).stdout)
    assert agent["status"] == "idle" and agent["execs"] == 0
    r = godel.run("agent", "exec", agent_id, "echo still here")
    assert r.returncode == 0 and r.stdout == "still here\n"
