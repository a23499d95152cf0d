"""The GIL and threads: the loop gives the GIL up while it waits, any
thread may post to it, and any number of threads may each run a loop."""

import asyncio
import threading
import time

import evloop
from conftest import TIMEOUT, run_forever_bounded


def test_gil_released_while_the_loop_sleeps(loop):
    """While the loop waits for a timer, another Python thread runs
    Python code: it counts until the loop has finished its sleep, and the
    loop's thread sees the count grow during its own sleep."""
    stop_counting = threading.Event()
    count = [0]

    def counter():
        while not stop_counting.is_set():
            count[0] += 1

    worker = threading.Thread(target=counter)
    worker.start()
    try:
        seen = {}

        def before():
            seen["before"] = count[0]
            loop.call_later(0.2, after)

        def after():
            seen["after"] = count[0]
            loop.stop()

        loop.call_soon(before)
        loop.run_forever()
    finally:
        stop_counting.set()
        worker.join(TIMEOUT)
    # With the GIL held through the sleep, the counter could not have run
    # more than a switch interval's worth; it runs for most of 0.2 s.
    assert seen["after"] - seen["before"] > 1000


def test_call_soon_threadsafe_wakes_a_sleeping_loop(loop):
    woken = threading.Event()
    result = []

    def poster():
        # Wait (bounded) until the loop has started, then post.
        assert started.wait(TIMEOUT)
        loop.call_soon_threadsafe(result.append, threading.get_ident())
        loop.call_soon_threadsafe(loop.stop)
        woken.set()

    started = threading.Event()
    t = threading.Thread(target=poster)
    t.start()
    # Nothing scheduled but a marker: the loop sleeps until the post.
    loop.call_soon(started.set)
    run_forever_bounded(loop)
    t.join(TIMEOUT)
    assert woken.is_set()
    assert result == [t.ident]


def test_many_threads_post_to_one_loop(loop):
    n_threads, per_thread = 8, 2000
    got = []
    done = [0]

    def post(k):
        for i in range(per_thread):
            loop.call_soon_threadsafe(got.append, (k, i))
        loop.call_soon_threadsafe(finished)

    def finished():
        done[0] += 1
        if done[0] == n_threads:
            loop.stop()

    threads = [threading.Thread(target=post, args=(k,)) for k in range(n_threads)]
    loop.call_soon(lambda: [t.start() for t in threads])
    run_forever_bounded(loop)
    for t in threads:
        t.join(TIMEOUT)
    assert len(got) == n_threads * per_thread
    # Each thread's posts arrive in its own order.
    for k in range(n_threads):
        assert [i for (kk, i) in got if kk == k] == list(range(per_thread))


def test_a_loop_per_thread_with_work_posted_between_them():
    n = 4
    loops = [None] * n
    ready = threading.Barrier(n + 1, timeout=TIMEOUT)
    results = {}

    def run(k):
        lp = evloop.new_event_loop()
        asyncio.set_event_loop(lp)
        loops[k] = lp
        ready.wait()
        lp.run_forever()
        results[k] = threading.get_ident()
        lp.close()

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    ready.wait()
    # A token passed around the ring of loops 100 times, then each stops.
    hops = []

    def hop(k, left):
        hops.append((k, threading.get_ident()))
        if left == 0:
            for lp in loops:
                lp.call_soon_threadsafe(lp.stop)
            return
        nxt = (k + 1) % n
        loops[nxt].call_soon_threadsafe(hop, nxt, left - 1)

    loops[0].call_soon_threadsafe(hop, 0, 100)
    for t in threads:
        t.join(TIMEOUT)
        assert not t.is_alive()
    assert len(hops) == 101
    # Each hop ran on the thread of the loop it was posted to.
    idents = {k: results[k] for k in range(n)}
    assert all(tid == idents[k] for k, tid in hops)


def test_loop_created_on_one_thread_runs_on_another(loop):
    out = []

    def runner():
        loop.call_soon(out.append, threading.get_ident())
        loop.call_soon(loop.stop)
        loop.run_forever()

    t = threading.Thread(target=runner)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive()
    assert out == [t.ident]


def test_run_in_executor_many_jobs(loop):
    async def main():
        futs = [loop.run_in_executor(None, pow, i, 2) for i in range(500)]
        return await asyncio.gather(*futs)

    assert loop.run_until_complete(main()) == [i * i for i in range(500)]
    loop.run_until_complete(loop.shutdown_default_executor())


def test_stop_from_another_thread(loop):
    def stopper():
        assert running.wait(TIMEOUT)
        loop.stop()

    running = threading.Event()
    t = threading.Thread(target=stopper)
    loop.call_soon(running.set)
    t.start()
    run_forever_bounded(loop)
    t.join(TIMEOUT)
    assert not loop.is_running()
