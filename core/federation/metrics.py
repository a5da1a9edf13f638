"""Prometheus metrics for the engine and per-agent performance stats.

``Metrics`` owns its own ``CollectorRegistry`` (never the process-global default), so
several engines or tests in one process never share or collide on series. Its
``observe_*``/``inc_*``/``set_*`` methods sit on the engine's hot paths: each is a dict
lookup plus the prometheus-client update (which takes its own per-value lock); no I/O.
Child series are cached per label tuple because ``Metric.labels()`` costs a lock, a
``str()`` per label and a dict probe on every call.

Label values: ``swarm`` may be ``None`` (a task or agent outside any swarm); it is
exported as the empty string, which Prometheus treats as "label absent".

Not thread-safe beyond what prometheus-client guarantees: call from the engine's event
loop thread (a ``forget_*`` racing an ``observe_*`` from another thread could re-create
a series just removed).

Failure-spike alerts (``AnomalyDetector``) live in ``core.federation.anomaly`` and are
re-exported here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from prometheus_client import (
    CONTENT_TYPE_PLAIN_0_0_4,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.parser import text_string_to_metric_families

from core.federation.anomaly import Anomaly, AnomalyDetector

__all__ = [
    "AGENT_OUTCOMES",
    "CONTENT_TYPE",
    "DEFAULT_EWMA_ALPHA",
    "ROUTE_BUCKETS",
    "TASK_BUCKETS",
    "TASK_STATUSES",
    "AgentStats",
    "Anomaly",
    "AnomalyDetector",
    "Metrics",
    "parse_exposition",
]

# generate_latest() writes the classic text format; CONTENT_TYPE_LATEST in
# prometheus-client 0.26 advertises 1.0.0, which is not what we serve.
CONTENT_TYPE: str = CONTENT_TYPE_PLAIN_0_0_4

# A routing decision is in-memory work: 5 µs ... 10 ms.
ROUTE_BUCKETS: tuple[float, ...] = (
    5e-6,
    1e-5,
    2.5e-5,
    5e-5,
    1e-4,
    2.5e-4,
    5e-4,
    1e-3,
    2.5e-3,
    5e-3,
    1e-2,
)

# A task runs an agent: 10 ms (a shell one-liner) ... 1 h (a long LLM session).
TASK_BUCKETS: tuple[float, ...] = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
    3600.0,
)

# Closed label vocabularies: a typo in the engine must not mint a new series.
TASK_STATUSES: frozenset[str] = frozenset(
    {"succeeded", "failed", "timed_out", "cancelled", "retried"}
)
AGENT_OUTCOMES: tuple[str, str] = ("succeeded", "failed")
TOKEN_KINDS: tuple[str, str] = ("input", "output")

# Weight of the newest sample in the per-agent EWMAs. 0.2 makes the last ~5 tasks carry
# ~2/3 of the weight (1 - 0.8**5 ≈ 0.67): quick enough for the router to steer away from
# an agent that turned slow or flaky, slow enough that one outlier does not flip it.
DEFAULT_EWMA_ALPHA = 0.2


def _swarm(swarm: str | None) -> str:
    return "" if swarm is None else swarm


# ------------------------------------------------------------------------ agent stats


@dataclass(frozen=True, slots=True)
class AgentStats:
    """One agent's task performance as the router sees it (an immutable snapshot).

    ``ewma_latency_s`` covers every finished task, failed ones included: it estimates
    how long the agent stays busy with a task. ``ewma_success_rate`` is the recency
    weighted success rate (what the router should use); ``success_rate`` is lifetime.
    Both EWMAs start at the first sample rather than at 0, so a new agent is not
    reported as infinitely fast or always failing.
    """

    agent_id: str
    runtime: str
    count: int
    successes: int
    ewma_latency_s: float
    ewma_success_rate: float
    last_duration_s: float

    @property
    def failures(self) -> int:
        return self.count - self.successes

    @property
    def success_rate(self) -> float:
        """Lifetime successes / tasks (stored stats always have ``count >= 1``)."""
        return self.successes / self.count if self.count else 0.0


# ---------------------------------------------------------------------------- metrics


class Metrics:
    """All engine metrics, on a registry of their own.

    Metric names (label names in braces):

    - ``godel_route_decision_seconds{strategy}`` histogram, ``ROUTE_BUCKETS``
    - ``godel_route_decisions_total{strategy,outcome}`` outcome routed|unroutable
    - ``godel_queue_depth{swarm,priority}`` gauge
    - ``godel_tasks_total{swarm,runtime,status}`` status in ``TASK_STATUSES``
    - ``godel_task_duration_seconds{swarm,runtime}`` histogram, ``TASK_BUCKETS``
    - ``godel_agents{swarm,status}`` gauge
    - ``godel_agent_tasks_total{agent,outcome}`` outcome succeeded|failed
    - ``godel_cost_usd_total{swarm,runtime}`` counter (float dollars), every exec
    - ``godel_tokens_total{swarm,runtime,kind}`` kind input|output, every exec

    Counters and histograms also export prometheus-client's ``*_created`` series.
    """

    CONTENT_TYPE: str = CONTENT_TYPE

    def __init__(self, *, ewma_alpha: float = DEFAULT_EWMA_ALPHA) -> None:
        if not 0.0 < ewma_alpha <= 1.0:
            raise ValueError("ewma_alpha must be in (0, 1]")
        self.ewma_alpha = ewma_alpha
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry

        self._route_seconds = Histogram(
            "godel_route_decision_seconds",
            "Time the router took to decide where a task goes.",
            ["strategy"],
            registry=r,
            buckets=ROUTE_BUCKETS,
        )
        self._route_total = Counter(
            "godel_route_decisions_total",
            "Routing decisions, by whether an agent was found.",
            ["strategy", "outcome"],
            registry=r,
        )
        self._queue_depth = Gauge(
            "godel_queue_depth",
            "Tasks waiting in the queue.",
            ["swarm", "priority"],
            registry=r,
        )
        self._tasks_total = Counter(
            "godel_tasks_total",
            "Task attempts by final status (retried: an attempt that will be retried).",
            ["swarm", "runtime", "status"],
            registry=r,
        )
        self._task_seconds = Histogram(
            "godel_task_duration_seconds",
            "Wall time of one task attempt on an agent.",
            ["swarm", "runtime"],
            registry=r,
            buckets=TASK_BUCKETS,
        )
        self._agents = Gauge(
            "godel_agents",
            "Agents by status.",
            ["swarm", "status"],
            registry=r,
        )
        self._agent_tasks = Counter(
            "godel_agent_tasks_total",
            "Tasks finished per agent.",
            ["agent", "outcome"],
            registry=r,
        )
        self._cost = Counter(
            "godel_cost_usd_total",
            "Model spend in US dollars: every exec with a known cost, with a task or not.",
            ["swarm", "runtime"],
            registry=r,
        )
        self._tokens = Counter(
            "godel_tokens_total",
            "Model tokens of every exec, with a task or not.",
            ["swarm", "runtime", "kind"],
            registry=r,
        )

        # Child caches, keyed by the label tuple. The route cache holds all three
        # children of a strategy so observe_route costs one dict probe.
        self._route_children: dict[str, tuple[Histogram, Counter, Counter]] = {}
        self._queue_children: dict[tuple[str, str], Gauge] = {}
        self._task_children: dict[tuple[str, str, str], Counter] = {}
        self._task_seconds_children: dict[tuple[str, str], Histogram] = {}
        self._agents_children: dict[tuple[str, str], Gauge] = {}
        self._agent_task_children: dict[tuple[str, str], Counter] = {}
        self._cost_children: dict[tuple[str, str], Counter] = {}
        self._token_children: dict[tuple[str, str], tuple[Counter, Counter]] = {}

        self._agent_stats: dict[str, AgentStats] = {}

    # ----------------------------------------------------------------- routing

    def observe_route(self, strategy: str, elapsed_s: float, chosen: bool) -> None:
        """One routing decision: how long it took and whether it found an agent."""
        children = self._route_children.get(strategy)
        if children is None:
            children = (
                self._route_seconds.labels(strategy),
                self._route_total.labels(strategy, "routed"),
                self._route_total.labels(strategy, "unroutable"),
            )
            self._route_children[strategy] = children
        children[0].observe(elapsed_s)
        (children[1] if chosen else children[2]).inc()

    # ------------------------------------------------------------------- queue

    def set_queue_depth(self, swarm: str | None, priority: str, n: int) -> None:
        key = (_swarm(swarm), str(priority))
        child = self._queue_children.get(key)
        if child is None:
            child = self._queue_children[key] = self._queue_depth.labels(*key)
        child.set(n)

    def inc_task(self, swarm: str | None, runtime: str, status: str) -> None:
        """Count one task attempt ending in ``status`` (one of ``TASK_STATUSES``)."""
        key = (_swarm(swarm), runtime, str(status))
        child = self._task_children.get(key)
        if child is None:
            # Validated only on a cache miss: a cached key was valid when first seen.
            if key[2] not in TASK_STATUSES:
                raise ValueError(f"unknown task status {status!r}")
            child = self._task_children[key] = self._tasks_total.labels(*key)
        child.inc()

    def observe_task(self, swarm: str | None, runtime: str, duration_s: float) -> None:
        key = (_swarm(swarm), runtime)
        child = self._task_seconds_children.get(key)
        if child is None:
            child = self._task_seconds_children[key] = self._task_seconds.labels(*key)
        # A wall-clock step can make a duration negative; a negative observation would
        # break Prometheus' reset detection on _sum.
        child.observe(duration_s if duration_s > 0.0 else 0.0)

    # ------------------------------------------------------------------ agents

    def set_agents(self, swarm: str | None, status: str, n: int) -> None:
        key = (_swarm(swarm), str(status))
        child = self._agents_children.get(key)
        if child is None:
            child = self._agents_children[key] = self._agents.labels(*key)
        child.set(n)

    def observe_agent_task(self, agent_id: str, runtime: str, ok: bool, duration_s: float) -> None:
        """One finished task on an agent: bump its counter and fold it into its EWMAs."""
        outcome = AGENT_OUTCOMES[0] if ok else AGENT_OUTCOMES[1]
        key = (agent_id, outcome)
        child = self._agent_task_children.get(key)
        if child is None:
            child = self._agent_task_children[key] = self._agent_tasks.labels(*key)
        child.inc()

        d = duration_s if duration_s > 0.0 else 0.0
        s = 1.0 if ok else 0.0
        prev = self._agent_stats.get(agent_id)
        # A new immutable snapshot per task (rare) keeps agent_stats() (per routing
        # candidate, frequent) a bare dict lookup.
        if prev is None:
            stats = AgentStats(agent_id, runtime, 1, int(ok), d, s, d)
        else:
            a = self.ewma_alpha
            stats = AgentStats(
                agent_id,
                runtime,
                prev.count + 1,
                prev.successes + int(ok),
                a * d + (1.0 - a) * prev.ewma_latency_s,
                a * s + (1.0 - a) * prev.ewma_success_rate,
                d,
            )
        self._agent_stats[agent_id] = stats

    def agent_stats(self, agent_id: str) -> AgentStats | None:
        """The agent's stats, or None if it has finished no task (or was forgotten)."""
        return self._agent_stats.get(agent_id)

    def all_agent_stats(self) -> Mapping[str, AgentStats]:
        """A read-only live view of every agent's stats (for the router)."""
        return MappingProxyType(self._agent_stats)

    def forget_agent(self, agent_id: str) -> None:
        """Drop the agent's series and stats, so short-lived agents do not leak series."""
        for outcome in AGENT_OUTCOMES:
            self._agent_task_children.pop((agent_id, outcome), None)
            self._agent_tasks.remove(agent_id, outcome)  # a no-op for an absent series
        self._agent_stats.pop(agent_id, None)

    def forget_swarm(self, swarm: str | None) -> None:
        """Drop every series labelled with ``swarm`` (for a swarm that was deleted)."""
        swarm = _swarm(swarm)
        for metric in (
            self._queue_depth,
            self._tasks_total,
            self._task_seconds,
            self._agents,
            self._cost,
            self._tokens,
        ):
            metric.remove_by_labels({"swarm": swarm})
        caches: tuple[dict[tuple[str, str], Gauge], ...] = (
            self._queue_children,
            self._agents_children,
        )
        for cache in caches:
            for key in [k for k in cache if k[0] == swarm]:
                del cache[key]
        for key3 in [k for k in self._task_children if k[0] == swarm]:
            del self._task_children[key3]
        for key2 in [k for k in self._task_seconds_children if k[0] == swarm]:
            del self._task_seconds_children[key2]
        for key2 in [k for k in self._cost_children if k[0] == swarm]:
            del self._cost_children[key2]
        for key2 in [k for k in self._token_children if k[0] == swarm]:
            del self._token_children[key2]

    # ------------------------------------------------------------ budget/cost

    def inc_cost(self, swarm: str | None, runtime: str, usd: Decimal) -> None:
        """Add spend. Call only with a known cost (``None`` means unknown, not free)."""
        if not usd.is_finite() or usd < 0:
            # NaN would poison the counter for good; a negative one breaks its contract.
            raise ValueError(f"cost must be a finite amount >= 0, got {usd}")
        key = (_swarm(swarm), runtime)
        child = self._cost_children.get(key)
        if child is None:
            child = self._cost_children[key] = self._cost.labels(*key)
        child.inc(float(usd))

    def inc_tokens(
        self, swarm: str | None, runtime: str, input_tokens: int = 0, output_tokens: int = 0
    ) -> None:
        """Add token counts (cache read/write tokens are not counted here)."""
        if input_tokens < 0 or output_tokens < 0:
            raise ValueError("token counts must be >= 0")
        key = (_swarm(swarm), runtime)
        children = self._token_children.get(key)
        if children is None:
            children = (
                self._tokens.labels(key[0], runtime, "input"),
                self._tokens.labels(key[0], runtime, "output"),
            )
            self._token_children[key] = children
        if input_tokens:
            children[0].inc(input_tokens)
        if output_tokens:
            children[1].inc(output_tokens)

    # ------------------------------------------------------------- exposition

    def exposition(self) -> bytes:
        """The registry in Prometheus text format 0.0.4 (serve with ``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def parse_exposition(text: str | bytes) -> dict[str, float]:
    """Map every sample of a text exposition to its value, for tests and tools.

    Keys are ``name{a="x",b="y"}`` with label names **sorted**, or a bare ``name``
    for a sample without labels, e.g. ``godel_queue_depth{priority="high",swarm="s1"}``.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels:
                labels = ",".join(
                    f'{k}="{_escape_label(v)}"' for k, v in sorted(sample.labels.items())
                )
                out[f"{sample.name}{{{labels}}}"] = sample.value
            else:
                out[sample.name] = sample.value
    return out
