"""Erlang C: how many agents a queue needs to meet its service level. Pure functions, no database.

The model (M/M/N): contacts arrive at random (Poisson) at `calls_per_hour`, each holds an agent for
`aht_seconds` on average (exponentially distributed), nobody abandons, and the N agents take one
contact at a time. The traffic A = arrivals per second × AHT, in Erlangs; N must exceed A or the
queue grows without end. Then
  P(wait)        = Erlang C(N, A)
  service level  = 1 − P(wait) · e^(−(N − A) · target / AHT)   (share answered within `target`)
  average speed of answer = P(wait) · AHT / (N − A)

Erlang C is computed from the Erlang B recursion, B(0) = 1, B(n) = A·B(n−1) / (n + A·B(n−1)),
C = N·B / (N − A·(1 − B)), which never forms A^N or N! and so stays exact for hundreds of agents.
For chat queues where an agent holds several conversations at once the figure is an upper bound:
Erlang C counts one contact per agent.
"""

import math

# Beyond this the inputs are nonsense for one queue (or a unit mix-up); stop rather than loop.
MAX_AGENTS = 2000


def traffic_erlangs(*, calls_per_hour: float, aht_seconds: float) -> float:
    """The offered load: how many agents would be busy all the time if no one ever waited."""
    return calls_per_hour * aht_seconds / 3600


def erlang_c(*, agents: int, traffic: float) -> float:
    """The probability that a contact has to wait (all `agents` busy when it arrives)."""
    if traffic <= 0:
        return 0.0
    if agents <= traffic:
        return 1.0
    blocking = 1.0
    for n in range(1, agents + 1):
        blocking = traffic * blocking / (n + traffic * blocking)
    return agents * blocking / (agents - traffic * (1 - blocking))


def service_level(*, agents: int, traffic: float, aht_seconds: float, target_seconds: float) -> float:
    """The share of contacts answered within `target_seconds` (0 when the agents cannot keep up)."""
    if traffic <= 0:
        return 1.0
    if agents <= traffic:
        return 0.0
    waits = erlang_c(agents=agents, traffic=traffic)
    return 1 - waits * math.exp(-(agents - traffic) * target_seconds / aht_seconds)


def average_speed_of_answer(*, agents: int, traffic: float, aht_seconds: float) -> float:
    """The average wait in seconds, over every contact (those answered at once count as 0)."""
    if traffic <= 0:
        return 0.0
    if agents <= traffic:
        return math.inf
    return erlang_c(agents=agents, traffic=traffic) * aht_seconds / (agents - traffic)


def agents_needed(*, calls_per_hour: float, aht_seconds: float, target_percent: float, target_seconds: float) -> int:
    """The fewest agents whose service level reaches `target_percent` within `target_seconds`."""
    if not 0 < target_percent < 100:
        raise ValueError("target_percent must be between 0 and 100 (exclusive)")
    traffic = traffic_erlangs(calls_per_hour=calls_per_hour, aht_seconds=aht_seconds)
    if traffic <= 0:
        return 0
    agents = math.floor(traffic) + 1
    while service_level(agents=agents, traffic=traffic, aht_seconds=aht_seconds, target_seconds=target_seconds) < (
        target_percent / 100
    ):
        agents += 1
        if agents > MAX_AGENTS:
            raise ValueError(f"more than {MAX_AGENTS} agents for {traffic:.1f} Erlangs: check the units")
    return agents
