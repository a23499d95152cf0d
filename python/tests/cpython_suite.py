"""CPython's own asyncio tests, run against evloop's loop.

``test.test_asyncio`` (shipped with CPython in the standard library's
``test`` package) writes most of its tests against a loop factory: the
``create_event_loop`` / ``new_test_loop`` / ``new_loop`` methods of its
test classes, or the event-loop policy that ``asyncio.new_event_loop``,
``asyncio.run`` and ``unittest.IsolatedAsyncioTestCase`` consult. This
module subclasses the applicable classes so that every one of those paths
gives an ``evloop.Loop``, and pytest collects the subclasses
(``test_cpython_asyncio.py`` imports them).

Every test that does not run is listed in ``skips.py`` with the reason.
"""

import asyncio
import sys
import unittest

import evloop
from test.test_asyncio import utils as test_utils

from skips import SKIPS

# The modules and classes run (module name -> class names). Classes written
# against CPython's internals wholesale (selector event loops, proactor,
# Windows, mocked transports) are not listed; the skip list covers single
# tests of the listed classes.
CLASSES = {
    "test_events": ["EventLoopTestsMixin", "AbstractEventLoopTests"],
    "test_base_events": ["BaseEventLoopTests", "RunningLoopTests"],
    "test_futures": [
        "DuckTests",
        "CFutureTests",
        "CSubFutureTests",
        "PyFutureTests",
        "CFutureDoneCallbackTests",
        "CSubFutureDoneCallbackTests",
        "PyFutureDoneCallbackTests",
        "CFutureInheritanceTests",
        "PyFutureInheritanceTests",
    ],
    "test_futures2": ["CFutureTests", "PyFutureTests", "FutureReprTests"],
    "test_tasks": [
        "CTask_CFuture_Tests",
        "CTask_CFuture_SubclassTests",
        "CTaskSubclass_PyFuture_Tests",
        "PyTask_CFutureSubclass_Tests",
        "CTask_PyFuture_Tests",
        "PyTask_CFuture_Tests",
        "PyTask_PyFuture_Tests",
        "PyTask_PyFuture_SubclassTests",
        "CTask_Future_Tests",
        "PyCurrentLoopTests",
        "CCurrentLoopTests",
        "GenericTaskTests",
        "FutureGatherTests",
        "CoroutineGatherTests",
        "RunCoroutineThreadsafeTests",
        "SleepTests",
        "CompatibilityTests",
    ],
    "test_runners": ["RunTests", "RunnerTests"],
    "test_timeouts": ["TimeoutTests"],
    "test_taskgroups": ["TestTaskGroup"],
    "test_locks": [
        "LockTests",
        "EventTests",
        "ConditionTests",
        "SemaphoreTests",
        "BarrierTests",
    ],
    "test_queues": [
        "QueueBasicTests",
        "QueueGetTests",
        "QueuePutTests",
        "LifoQueueTests",
        "PriorityQueueTests",
        "QueueJoinTests",
        "LifoQueueJoinTests",
        "PriorityQueueJoinTests",
    ],
    "test_context": ["DecimalContextTest"],
    "test_waitfor": ["AsyncioWaitForTest"],
    "test_pep492": ["CoroutineTests", "LockTests", "StreamReaderTests"],
    "test_threads": ["ToThreadTests"],
}


def _evloop_loop(self=None, gen=None):
    loop = evloop.new_event_loop()
    assert isinstance(loop, evloop.Loop)
    return loop


class EvloopCase:
    """Mixed in front of each CPython class: the policy gives evloop
    loops while the test runs, and the loop-factory methods too."""

    def run(self, result=None):
        saved = asyncio.events._event_loop_policy
        asyncio.set_event_loop_policy(evloop.EventLoopPolicy())
        try:
            return super().run(result)
        finally:
            asyncio.set_event_loop_policy(saved)

    # test_events.EventLoopTestsMixin
    def create_event_loop(self):
        return _evloop_loop()

    # test_utils.TestCase (futures, tasks, ...): CPython's TestLoop has a
    # virtual clock driven by `gen`; tests that depend on it are skipped.
    def new_test_loop(self, gen=None):
        loop = _evloop_loop()
        self.set_event_loop(loop)
        return loop


class RunnersCase(EvloopCase):
    """test_runners builds its loops in ``new_loop`` (a mocked
    BaseEventLoop there); here an evloop loop with the same marker for
    ``shutdown_asyncgens`` that its tearDown checks."""

    def new_loop(self):
        loop = _evloop_loop()
        loop.shutdown_ag_run = False
        real = loop.shutdown_asyncgens

        async def shutdown_asyncgens():
            await real()
            loop.shutdown_ag_run = True

        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop


class BaseEventsCase(EvloopCase):
    """test_base_events.BaseEventLoopTests builds a bare BaseEventLoop
    with a mocked selector in setUp; here an evloop loop."""

    def setUp(self):
        test_utils.TestCase.setUp(self)
        self.loop = _evloop_loop()
        self.set_event_loop(self.loop)


def build():
    """The test classes, by generated name (``Test_<module>_<class>``)."""
    import importlib

    built = {}
    for modname, classnames in CLASSES.items():
        module = importlib.import_module(f"test.test_asyncio.{modname}")
        for classname in classnames:
            base = getattr(module, classname)
            bases = [BaseEventsCase if classname == "BaseEventLoopTests" else
                     RunnersCase if modname == "test_runners" else EvloopCase, base]
            if not issubclass(base, unittest.TestCase):
                bases.append(test_utils.TestCase)
            name = f"Test_{modname}_{classname}"
            cls = type(name, tuple(bases), {"__module__": __name__})
            for attr in dir(cls):
                if not attr.startswith("test"):
                    continue
                reason = SKIPS.get(f"{modname}.{classname}.{attr}")
                if reason is not None:
                    setattr(cls, attr, unittest.skip(reason)(getattr(cls, attr)))
            built[name] = cls
    unknown = set(SKIPS) - {
        f"{m}.{c}.{a}"
        for m, cs in CLASSES.items()
        for c in cs
        for a in dir(getattr(importlib.import_module(f"test.test_asyncio.{m}"), c))
    }
    if unknown:
        raise RuntimeError(f"skip list names tests that do not exist: {sorted(unknown)}")
    return built
