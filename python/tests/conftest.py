import asyncio

import pytest

import evloop

# Every wait in the tests is bounded; a hang fails the test instead.
TIMEOUT = 30


@pytest.fixture
def loop():
    """A fresh evloop loop, closed after the test."""
    lp = evloop.new_event_loop()
    yield lp
    if lp.is_running():
        lp.stop()
    if not lp.is_closed():
        lp.close()
    asyncio.set_event_loop(None)


def run_briefly(lp, times=1):
    """Runs `times` iterations of the loop."""
    for _ in range(times):
        lp.call_soon(lp.stop)
        lp.run_forever()


def run_forever_bounded(lp, timeout=TIMEOUT):
    """Runs the loop until the test's own events stop it. A guard timer
    bounds the run, and the test fails if the guard is what ended it (a
    lost wake-up), rather than hanging or passing on the guard's stop."""
    timed_out = []

    def time_out():
        timed_out.append(True)
        lp.stop()

    guard = lp.call_later(timeout, time_out)
    try:
        lp.run_forever()
    finally:
        guard.cancel()
    assert not timed_out, f"nothing but the {timeout} s guard stopped the loop"
