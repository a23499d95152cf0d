import asyncio

import pytest

import evloop


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
