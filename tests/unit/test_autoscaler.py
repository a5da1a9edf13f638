"""The autoscaler's arithmetic (the acting part is in tests/engine/test_autoscale.py)."""

from core.federation.autoscaler import desired_agents


def test_desired_is_ceil_of_work_over_target_clamped() -> None:
    assert desired_agents(0, 1, 0, 5) == 0
    assert desired_agents(7, 3, 0, 10) == 3
    assert desired_agents(100, 1, 0, 5) == 5
    assert desired_agents(0, 1, 2, 5) == 2
    assert desired_agents(9, 3, 0, 10) == 3
