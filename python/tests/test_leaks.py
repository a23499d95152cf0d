"""Nothing leaks: reference cycles between the loop, handles and futures
are collectable, reference counts come back, and a million callbacks or
a million cancelled timers leave no memory behind."""

import asyncio
import gc
import sys
import tracemalloc
import weakref

import evloop
from conftest import run_briefly


def test_closed_loop_with_cycles_is_collected():
    lp = evloop.new_event_loop()
    ref = weakref.ref(lp)

    class Holder:
        pass

    holder = Holder()
    holder.loop = lp
    holder.handle = lp.call_soon(lambda: holder)  # handle -> lambda -> holder -> handle
    holder.timer = lp.call_later(60, lambda: holder)
    holder.future = lp.create_future()
    holder.future.add_done_callback(lambda f: holder)
    lp.set_exception_handler(lambda l, c: holder)
    lp.set_task_factory(lambda l, c: holder and asyncio.Task(c, loop=l))
    run_briefly(lp)
    lp.close()
    del lp, holder
    gc.collect()
    assert ref() is None


def test_handle_refcounts_come_back(loop):
    def cb(arg):
        pass

    arg = object()
    before = (sys.getrefcount(cb), sys.getrefcount(arg))
    for _ in range(100):
        loop.call_soon(cb, arg)
        loop.call_later(0, cb, arg)
        loop.call_later(60, cb, arg).cancel()
    run_briefly(loop, 2)
    gc.collect()
    assert (sys.getrefcount(cb), sys.getrefcount(arg)) == before


def test_dropped_pending_callbacks_release_their_references():
    lp = evloop.new_event_loop()
    arg = object()
    before = sys.getrefcount(arg)
    for _ in range(100):
        lp.call_soon(print, arg)
        lp.call_later(60, print, arg)
    assert sys.getrefcount(arg) == before + 200
    lp.close()
    assert sys.getrefcount(arg) == before


def test_task_and_future_cycles_collectable(loop):
    async def work(fut):
        await fut

    fut = loop.create_future()
    task = loop.create_task(work(fut))
    run_briefly(loop)
    fut.set_result(None)
    loop.run_until_complete(task)
    refs = [weakref.ref(fut), weakref.ref(task)]
    del fut, task
    gc.collect()
    assert all(r() is None for r in refs)


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


def _growth(fn):
    """Bytes still allocated after `fn` ran and the garbage was collected:
    Python's allocations as tracemalloc sees them, and (in a second run of
    `fn`, without tracemalloc, whose own tables would count) the process's
    resident size, which also covers the Rust side's allocations: callback
    cells, timer entries, the queues."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        fn()
        gc.collect()
        traced = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    gc.collect()
    before = _rss()
    fn()
    gc.collect()
    return traced, _rss() - before


def test_a_million_callbacks_leave_nothing_behind(loop):
    def noop():
        pass

    # One round first, so that caches and free lists are warm.
    def rounds(n):
        for _ in range(n):
            for _ in range(100_000):
                loop.call_soon(noop)
            run_briefly(loop)

    rounds(1)
    traced, rss = _growth(lambda: rounds(10))
    assert traced < 256 * 1024, traced
    # A leak of the Rust side would be ~100 bytes a callback: 100 MB.
    assert rss < 16 * 1024 * 1024, rss


def test_a_million_cancelled_timers_leave_nothing_behind(loop):
    def noop():
        pass

    def rounds(n):
        for _ in range(n):
            handles = [loop.call_later(3600, noop) for _ in range(100_000)]
            for h in handles:
                h.cancel()
            del handles
            run_briefly(loop)

    rounds(1)
    traced, rss = _growth(lambda: rounds(10))
    assert traced < 256 * 1024, traced
    # A leak of the Rust side would be ~100 bytes a callback: 100 MB.
    assert rss < 16 * 1024 * 1024, rss


def test_destructors_of_dropped_callbacks_may_call_the_loop():
    """close() drops pending callbacks, timers and watchers; their
    arguments' destructors run then and may call the loop (no internal
    lock is held): they get asyncio's closed-loop error, no deadlock."""
    import socket
    import threading

    lp = evloop.new_event_loop()
    errors = []

    class CallsLoop:
        def __del__(self):
            for call in (
                lambda: lp.call_soon(print),
                lambda: lp.call_soon_threadsafe(print),
                lambda: lp.call_later(1, print),
            ):
                try:
                    call()
                except RuntimeError as e:
                    errors.append(str(e))

    a, b = socket.socketpair()
    try:
        lp.call_later(10, lambda obj: None, CallsLoop())
        lp.add_reader(a, lambda obj: None, CallsLoop())

        def inside():
            lp.call_soon(lambda obj: None, CallsLoop())  # left in the batch
            lp.stop()

        lp.call_soon(inside)
        lp.run_forever()
        t = threading.Thread(target=lambda: lp.call_soon_threadsafe(lambda obj: None, CallsLoop()))
        t.start()
        t.join(30)
        lp.close()
        gc.collect()
    finally:
        a.close()
        b.close()
    assert errors == ["Event loop is closed"] * 12
