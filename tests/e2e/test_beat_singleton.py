"""Two beat processes by mistake: one schedules, the other stands by and takes over when it stops."""

from __future__ import annotations

import signal

from tests.e2e.conftest import Stack, wait_for

SENT = "Sending due task relay-outbox"


def test_a_second_beat_stands_by_and_takes_over_when_the_first_stops(stack: Stack):
    stack.start("beat")
    wait_for(lambda: stack.log("beat").count(SENT) >= 1, 60, what="the first beat schedules")
    assert "beat_leading" in stack.log("beat")

    # A second beat, on another machine (its own schedule file).
    second_line = stack.lines["beat"].replace(
        "${CELERY_BEAT_SCHEDULE:-/tmp/celerybeat-schedule}", str(stack.workdir / "second-schedule")
    )
    assert second_line != stack.lines["beat"]
    stack.start("beat2", second_line)
    wait_for(lambda: "beat_standby" in stack.log("beat2"), 60, what="the second beat stands by")
    sent_before = stack.log("beat").count(SENT)
    wait_for(lambda: stack.log("beat").count(SENT) >= sent_before + 3, 60, what="the leader goes on")
    assert SENT not in stack.log("beat2")

    stack.signal("beat", signal.SIGTERM)
    assert stack.processes["beat"].wait(timeout=30) == 0
    wait_for(lambda: stack.log("beat2").count(SENT) >= 1, 60, what="the standby takes over")
    assert "beat_leading" in stack.log("beat2")
