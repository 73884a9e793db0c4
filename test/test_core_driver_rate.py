"""The converter driver's control loop may run slowly only while idle (issue 16).

``ConverterDriver.full_rate`` decides. On the in-memory charger, over whole charges with and
without a fault, it holds at every step at which a session is open or the output is on, and it
is off again once the charger is idle.
"""

from __future__ import annotations

from typing import Any

import pytest

from evse_can_ros.core.power_stage import Mode
from evse_can_ros.simulation import simulated_charger


@pytest.mark.parametrize(
    "scenario",
    [{}, {"ev_emergency_after": 1.0}, {"reset_after": 1.0, "reset_duration": 1.0}],
    ids=["clean", "ev_emergency_stop", "controller_reset"],
)
def test_full_rate_holds_whenever_a_session_is_open_or_the_output_is_on(
    scenario: dict[str, Any],
) -> None:
    scenario = {"replug_delay": -1.0, **scenario}
    c = simulated_charger(vehicle={"initial_soc": 70.0}, scenario=scenario)
    assert not c.driver.full_rate  # no session yet: idle
    rates: list[tuple[bool, bool, bool]] = []  # (full_rate, in session, output on)

    def watch(ch: Any) -> bool:
        d = ch.driver
        rates.append((d.full_rate, d.module.in_session, d.loop.applied.mode is not Mode.OFF))
        return False

    c.submit_goal(target_soc=72.0)
    c.run(600.0, until=lambda ch: watch(ch) or len(ch.trace.results) > 0)
    c.run(10.0, until=watch)  # after the result: the session ends, the charger idles
    assert any(on for _, _, on in rates), "the output was never on: nothing tested"
    assert all(full for full, session, on in rates if session or on)
    assert rates[-1] == (False, False, False)  # idle again: the loop may slow down
