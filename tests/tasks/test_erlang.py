"""Erlang C against a published worked example, and against the textbook formula computed another way."""

import math

import pytest

from tasks.erlang import agents_needed, average_speed_of_answer, erlang_c, service_level, traffic_erlangs


def erlang_c_by_factorials(agents: int, traffic: float) -> float:
    """The formula as printed (A^N/N! · N/(N−A) over the sum), an independent check of the recursion."""
    top = traffic**agents / math.factorial(agents) * agents / (agents - traffic)
    return top / (sum(traffic**k / math.factorial(k) for k in range(agents)) + top)


def test_the_call_centre_helper_worked_example():
    """Call Centre Helper, "Erlang C Formula – Made Simple With an Easy Worked Example"
    (https://www.callcentrehelper.com/erlang-c-formula-example-121281.htm): 100 calls in 30 minutes,
    average handling time 180 s, service level target 80% answered in 20 s.

    The article works it through by hand: traffic intensity 10 Erlangs; starting from N = A + 1 = 11
    agents, the probability a call waits is 68.21% (two decimals of a percent), the service level
    39.0% and the average speed of answer 122.8 s (one decimal each); raising N until the target is
    met gives 14 agents (before shrinkage), with an occupancy of 71.4%.
    """
    traffic = traffic_erlangs(calls_per_hour=200, aht_seconds=180)
    assert traffic == pytest.approx(10)
    assert round(100 * erlang_c(agents=11, traffic=traffic), 2) == 68.21
    assert round(100 * service_level(agents=11, traffic=traffic, aht_seconds=180, target_seconds=20), 1) == 39.0
    assert round(average_speed_of_answer(agents=11, traffic=traffic, aht_seconds=180), 1) == 122.8
    needed = agents_needed(calls_per_hour=200, aht_seconds=180, target_percent=80, target_seconds=20)
    assert needed == 14
    assert round(100 * traffic / needed, 1) == 71.4
    # 13 agents would not do: the answer is the smallest N that reaches the target.
    assert service_level(agents=13, traffic=traffic, aht_seconds=180, target_seconds=20) < 0.80
    assert service_level(agents=14, traffic=traffic, aht_seconds=180, target_seconds=20) >= 0.80


@pytest.mark.parametrize(
    ("agents", "traffic"), [(1, 0.5), (11, 10), (14, 10), (55, 48), (120, 110.5), (300, 290)]
)  # fmt: skip
def test_the_recursion_matches_the_printed_formula(agents, traffic):
    assert erlang_c(agents=agents, traffic=traffic) == pytest.approx(erlang_c_by_factorials(agents, traffic), rel=1e-9)


def test_a_hundred_calls_an_hour_of_three_minutes_need_eight_agents_for_80_in_20():
    """A = 5 Erlangs. With the printed formula: 7 agents answer 74.0% within 20 s, 8 agents 88.0%."""
    for agents, percent in ((7, 74.0), (8, 88.0)):
        by_factorials = 1 - erlang_c_by_factorials(agents, 5) * math.exp(-(agents - 5) * 20 / 180)
        assert round(100 * by_factorials, 1) == percent
        assert service_level(agents=agents, traffic=5, aht_seconds=180, target_seconds=20) == pytest.approx(
            by_factorials
        )
    assert agents_needed(calls_per_hour=100, aht_seconds=180, target_percent=80, target_seconds=20) == 8


def test_edges():
    assert agents_needed(calls_per_hour=0, aht_seconds=180, target_percent=80, target_seconds=20) == 0
    assert erlang_c(agents=3, traffic=3) == 1.0  # as many agents as Erlangs: everyone waits, forever
    assert service_level(agents=3, traffic=4, aht_seconds=60, target_seconds=20) == 0.0
    assert average_speed_of_answer(agents=2, traffic=2, aht_seconds=60) == math.inf
    # More agents, never a worse service level; a longer target, never a worse one either.
    levels = [service_level(agents=n, traffic=20, aht_seconds=300, target_seconds=30) for n in range(21, 40)]
    assert levels == sorted(levels)
    assert service_level(agents=25, traffic=20, aht_seconds=300, target_seconds=60) > levels[4]
    with pytest.raises(ValueError):
        agents_needed(calls_per_hour=10, aht_seconds=60, target_percent=100, target_seconds=20)
