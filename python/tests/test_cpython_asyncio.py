"""Collects CPython's asyncio test classes, run on evloop (see
cpython_suite.py; the skipped tests and reasons are in skips.py)."""

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import cpython_suite  # noqa: E402

globals().update(cpython_suite.build())


def test_the_cpython_classes_run_on_evloop():
    """The policy and loop-factory plumbing really gives evloop loops: an
    IsolatedAsyncioTestCase (timeouts, task groups, locks, queues, wait_for
    and to_thread are written as such) and a test_utils.TestCase."""
    import asyncio
    import unittest

    import evloop

    seen = []

    class Isolated(cpython_suite.EvloopCase, unittest.IsolatedAsyncioTestCase):
        async def test_probe(self):
            seen.append(type(asyncio.get_running_loop()))

    class Plain(cpython_suite.EvloopCase, cpython_suite.test_utils.TestCase):
        def test_probe(self):
            seen.append(type(self.new_test_loop()))

    for case in (Isolated("test_probe"), Plain("test_probe")):
        result = unittest.TestResult()
        case.run(result)
        assert result.wasSuccessful(), result.errors + result.failures
    assert seen == [evloop.Loop, evloop.Loop]
