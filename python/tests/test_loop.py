"""The loop's own methods: scheduling, handles, running and stopping,
errors and the exception handler, debug mode, executors."""

import asyncio
import concurrent.futures
import contextvars
import logging
import re
import sys
import threading

import pytest

import evloop
from evloop import _compat
from conftest import TIMEOUT, run_briefly, run_forever_bounded


def test_loop_class_and_repr(loop):
    assert isinstance(loop, asyncio.AbstractEventLoop)
    assert isinstance(loop, evloop.Loop)
    assert repr(loop) == "<Loop running=False closed=False debug=False>"
    loop.close()
    assert repr(loop) == "<Loop running=False closed=True debug=False>"


def test_call_soon_order_args_and_handle(loop):
    seen = []
    handles = [loop.call_soon(seen.append, i) for i in range(5)]
    h = loop.call_soon(seen.append, "cancelled")
    h.cancel()
    assert h.cancelled() and not handles[0].cancelled()
    assert isinstance(handles[0], evloop.Handle)
    run_briefly(loop)
    assert seen == [0, 1, 2, 3, 4]


def test_what_a_callback_schedules_runs_next_iteration(loop):
    seen = []

    def first():
        seen.append("first")
        loop.call_soon(seen.append, "scheduled by first")

    loop.call_soon(first)
    loop.call_soon(seen.append, "second")
    run_briefly(loop)
    assert seen == ["first", "second"]
    run_briefly(loop)
    assert seen == ["first", "second", "scheduled by first"]


def test_handle_repr_as_asyncio():
    lp = evloop.new_event_loop()
    try:

        def noop(*args):
            pass

        h = lp.call_soon(noop, 1, 2)
        assert re.fullmatch(r"<Handle test_handle_repr_as_asyncio\.<locals>\.noop\(1, 2\) at .*test_loop\.py:\d+>", repr(h))
        h.cancel()
        assert repr(h) == "<Handle cancelled>"
        t = lp.call_at(123.0, noop)
        assert re.fullmatch(r"<TimerHandle when=123\.0 .*noop\(\) at .*>", repr(t))
        t.cancel()
        assert repr(t) == "<TimerHandle cancelled when=123.0>"
    finally:
        lp.close()


def test_call_later_and_call_at_order_and_when(loop):
    seen = []
    # Bracketed by two clock readings: however long the call takes, when()
    # is its own reading plus the delay.
    before = loop.time()
    t1 = loop.call_later(0.01, seen.append, 1)
    after = loop.time()
    t2 = loop.call_at(t1.when() + 0.01, seen.append, 2)
    t0 = loop.call_at(before - 5, seen.append, 0)  # in the past: due at once
    assert before + 0.01 <= t1.when() <= after + 0.01
    assert t2.when() == t1.when() + 0.01
    assert isinstance(t0, evloop.TimerHandle) and isinstance(t0, evloop.Handle)
    assert t0 < t1 < t2 and t2 > t1 and t1 <= t1 and t1 == t1
    zero = loop.call_at(-0.0, print)
    assert hash(t1) == hash(t1.when()) and hash(zero) == hash(0)
    zero.cancel()
    loop.call_later(0.03, loop.stop)
    loop.run_forever()
    assert seen == [0, 1, 2]


def test_time_is_monotonic_clock(loop):
    import time

    a = time.monotonic()
    b = loop.time()
    c = time.monotonic()
    assert a <= b <= c


def test_cancelled_timer_does_not_run(loop):
    seen = []
    t = loop.call_later(0.001, seen.append, "no")
    t.cancel()
    assert t.cancelled()
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert seen == []


def test_bad_arguments_get_asyncio_errors(loop):
    with pytest.raises(TypeError, match="delay must not be None"):
        loop.call_later(None, print)
    with pytest.raises(TypeError, match="when cannot be None"):
        loop.call_at(None, print)
    with pytest.raises(TypeError, match="unsupported operand type"):
        loop.call_later("1", print)
    with pytest.raises(TypeError, match="task factory must be a callable or None"):
        loop.set_task_factory(1)
    with pytest.raises(ValueError, match="Invalid file descriptor: -1"):
        loop.add_reader(-1, print)
    with pytest.raises(ValueError, match="Invalid file object"):
        loop.add_reader(object(), print)

    # selectors' rules for fileno(): int() of what it returns; an error
    # other than AttributeError/TypeError/ValueError passes through.
    class Fileno:
        def __init__(self, value):
            self.value = value

        def fileno(self):
            if isinstance(self.value, BaseException):
                raise self.value
            return self.value

    with pytest.raises(OSError, match="gone"):
        loop.add_reader(Fileno(OSError("gone")), print)
    with pytest.raises(ValueError, match="Invalid file descriptor: -2"):
        loop.add_reader(Fileno("-2"), print)


def test_context_argument_and_copies(loop):
    var = contextvars.ContextVar("var", default="default")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    seen = []
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    var.set("at call_soon")
    h = loop.call_soon(lambda: (seen.append(var.get()), var.set("changed in callback")))
    var.set("after call_soon")
    run_briefly(loop)
    # The callback ran in the copy taken at call_soon; its change stayed there.
    assert seen == ["in ctx", "at call_soon"]
    assert var.get() == "after call_soon"
    assert h.get_context().get(var) == "changed in callback"
    assert loop.call_later(1, print, context=ctx).get_context() is ctx


def test_run_until_complete_future_coroutine_and_stop(loop):
    async def coro(x):
        await asyncio.sleep(0)
        return x * 2

    assert loop.run_until_complete(coro(21)) == 42
    fut = loop.create_future()
    loop.call_soon(fut.set_result, "done")
    assert loop.run_until_complete(fut) == "done"
    fut = loop.create_future()
    loop.call_soon(loop.stop)
    with pytest.raises(RuntimeError, match=r"^Event loop stopped before Future completed\.$"):
        loop.run_until_complete(fut)

    async def fails():
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop.run_until_complete(fails())


def test_running_state_and_nesting_refused(loop):
    errors = []

    def inside():
        assert loop.is_running()
        assert asyncio.get_running_loop() is loop
        assert asyncio.get_event_loop() is loop
        coro = asyncio.sleep(0)
        for call in (loop.run_forever, lambda: loop.run_until_complete(coro)):
            try:
                call()
            except RuntimeError as e:
                errors.append(str(e))
        coro.close()
        try:
            loop.close()
        except RuntimeError as e:
            errors.append(str(e))
        other = evloop.new_event_loop()
        try:
            other.run_forever()
        except RuntimeError as e:
            errors.append(str(e))
        finally:
            other.close()
        loop.stop()

    loop.call_soon(inside)
    loop.run_forever()
    assert not loop.is_running()
    assert errors == [
        "This event loop is already running",
        "This event loop is already running",
        "Cannot close a running event loop",
        "Cannot run the event loop while another loop is running",
    ]


def test_closed_loop_refuses_work(loop):
    loop.close()
    loop.close()  # idempotent
    assert loop.is_closed()
    for call in (
        lambda: loop.call_soon(print),
        lambda: loop.call_later(1, print),
        lambda: loop.call_at(1, print),
        lambda: loop.call_soon_threadsafe(print),
        loop.run_forever,
        lambda: loop.add_reader(0, print),
        lambda: loop.run_in_executor(None, print),
    ):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            call()
    assert loop.remove_reader(0) is False
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.create_task(coro)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(coro)
    coro.close()


def test_stop_before_run_makes_one_iteration(loop):
    seen = []
    loop.stop()
    loop.call_soon(seen.append, 1)
    loop.run_forever()
    assert seen == [1]


def test_exception_in_callback_goes_to_handler(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append((lp, ctx)))
    assert loop.get_exception_handler() is not None

    def bad():
        raise ZeroDivisionError("x")

    h = loop.call_soon(bad)
    run_briefly(loop)
    [(lp, ctx)] = contexts
    assert lp is loop
    assert set(ctx) == {"message", "exception", "handle"}
    assert ctx["handle"] is h
    assert isinstance(ctx["exception"], ZeroDivisionError)
    assert ctx["exception"].__traceback__ is not None
    assert ctx["message"].startswith("Exception in callback ")
    assert "bad()" in ctx["message"]
    with pytest.raises(TypeError, match="A callable object or None is expected"):
        loop.set_exception_handler(1)


def test_default_exception_handler_logs_with_asyncio_wording(loop, caplog):
    def bad():
        raise ValueError("logged")

    loop.call_soon(bad)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_briefly(loop)
    [record] = caplog.records
    assert record.name == "asyncio"
    assert record.getMessage().startswith("Exception in callback ")
    assert "\nhandle: <Handle " in record.getMessage()
    assert record.exc_info[0] is ValueError


def test_broken_exception_handler_falls_back_to_default(loop, caplog):
    def handler(lp, ctx):
        raise RuntimeError("handler broke")

    loop.set_exception_handler(handler)
    loop.call_soon(lambda: 1 / 0)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_briefly(loop)
    assert "Unhandled error in exception handler" in caplog.text


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit])
def test_keyboard_interrupt_and_system_exit_propagate(loop, exc):
    seen = []

    def interrupt():
        raise exc()

    loop.call_soon(seen.append, "before")
    loop.call_soon(interrupt)
    loop.call_soon(seen.append, "after")
    with pytest.raises(exc):
        loop.run_forever()
    assert not loop.is_running()
    # The rest of that iteration did not run; it runs first next time.
    assert seen == ["before"]
    loop.call_soon(seen.append, "later")
    run_briefly(loop)
    assert seen == ["before", "after", "later"]


def test_keyboard_interrupt_out_of_run_until_complete(loop):
    async def main():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(main())
    # The loop is usable afterwards.
    assert loop.run_until_complete(asyncio.sleep(0, "again")) == "again"


def test_debug_mode_checks(loop):
    loop.set_debug(True)
    assert loop.get_debug()

    async def coro():
        pass

    for method in (loop.call_soon, loop.call_soon_threadsafe):
        c = coro()
        with pytest.raises(TypeError, match=rf"coroutines cannot be used with {method.__name__}\(\)"):
            method(c)
        c.close()
    with pytest.raises(TypeError, match=r"a callable object was expected by call_later\(\), got 1"):
        loop.call_later(1, 1)
    # Source traceback of a handle made in debug mode ends in this frame.
    h = loop.call_soon(print)
    assert h._source_traceback[-1][2] == "test_debug_mode_checks"
    h.cancel()
    # Non-thread-safe calls from another thread are refused while running.
    errors = []

    def from_thread():
        try:
            loop.call_soon(print)
        except RuntimeError as e:
            errors.append(str(e))
        loop.call_soon_threadsafe(loop.stop)

    thread = threading.Thread(target=from_thread)
    loop.call_soon(thread.start)
    run_forever_bounded(loop)
    thread.join(TIMEOUT)
    assert not thread.is_alive()
    assert errors == ["Non-thread-safe operation invoked on an event loop other than the current one"]


def test_debug_mode_slow_callback_warning(loop, caplog):
    import time

    loop.set_debug(True)
    loop.slow_callback_duration = 0.01
    assert loop.slow_callback_duration == 0.01

    def slow():
        time.sleep(0.05)

    loop.call_soon(slow)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        run_briefly(loop)
    assert re.search(r"Executing <Handle .*slow\(\) .*> took \d+\.\d{3} seconds", caplog.text)


def test_debug_from_environment(monkeypatch):
    monkeypatch.setenv("PYTHONASYNCIODEBUG", "1")
    lp = evloop.new_event_loop()
    try:
        assert lp.get_debug()
    finally:
        lp.close()


def test_create_task_name_context_and_factory(loop):
    var = contextvars.ContextVar("var")
    ctx = contextvars.copy_context()
    ctx.run(var.set, "ctx")

    async def read():
        return var.get("unset")

    task = loop.create_task(read(), name="reader", context=ctx)
    assert isinstance(task, asyncio.Task)
    assert task.get_name() == "reader"
    assert loop.run_until_complete(task) == "ctx"

    made = []

    def factory(lp, coro, **kwargs):
        made.append(kwargs)
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    task = loop.create_task(read(), name="named")
    assert task.get_name() == "named"
    assert loop.run_until_complete(task) == "unset"
    # Without a name or context the factory gets (loop, coro) alone.
    assert loop.run_until_complete(loop.create_task(read())) == "unset"
    assert made[-1] == {}
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None
    assert made
    if not _compat.CREATE_TASK_TAKES_KEYWORDS:
        # This Python's create_task takes no further keywords.
        coro = read()
        with pytest.raises(TypeError, match="unexpected keyword argument 'foo'"):
            loop.create_task(coro, foo=1)
        coro.close()


def test_create_future_is_asyncio_future(loop):
    fut = loop.create_future()
    assert type(fut) is asyncio.Future
    assert fut.get_loop() is loop


def test_run_in_executor_default_and_given(loop):
    tid = loop.run_until_complete(loop.run_in_executor(None, threading.get_ident))
    assert tid != threading.get_ident()
    assert isinstance(loop._default_executor, concurrent.futures.ThreadPoolExecutor)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        assert loop.run_until_complete(loop.run_in_executor(pool, pow, 2, 10)) == 1024
    with pytest.raises(TypeError, match="executor must be ThreadPoolExecutor instance"):
        loop.set_default_executor(object())
    loop.run_until_complete(loop.shutdown_default_executor())
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        loop.run_in_executor(None, print)


def test_shutdown_asyncgens(loop):
    closed = []

    async def agen():
        try:
            yield 1
            yield 2
        finally:
            closed.append(True)

    async def main():
        g = agen()
        await g.__anext__()
        return g

    g = loop.run_until_complete(main())
    loop.run_until_complete(loop.shutdown_asyncgens())
    assert closed == [True]
    del g


def test_asyncio_helpers_unchanged():
    async def main():
        lp = asyncio.get_running_loop()
        assert isinstance(lp, evloop.Loop)
        q = asyncio.Queue()
        results = []

        async def producer():
            for i in range(3):
                await q.put(i)
                await asyncio.sleep(0)

        async def consumer():
            for _ in range(3):
                results.append(await q.get())

        async with asyncio.TaskGroup() as tg:
            tg.create_task(producer())
            tg.create_task(consumer())
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(10)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        gathered = await asyncio.gather(asyncio.sleep(0, "a"), asyncio.to_thread(lambda: "b"))
        event = asyncio.Event()
        lp.call_later(0.001, event.set)
        await event.wait()
        return results, gathered

    assert evloop.run(main()) == ([0, 1, 2], ["a", "b"])


def test_run_and_policy():
    async def main():
        return type(asyncio.get_running_loop())

    assert evloop.run(main()) is evloop.Loop
    assert evloop.run(main(), debug=True) is evloop.Loop
    saved = asyncio.events._event_loop_policy
    try:
        evloop.install()
        assert isinstance(asyncio.get_event_loop_policy(), evloop.EventLoopPolicy)
        lp = asyncio.new_event_loop()
        assert isinstance(lp, evloop.Loop)
        lp.close()
        assert asyncio.run(main()) is evloop.Loop
    finally:
        asyncio.set_event_loop_policy(saved)


def test_run_refuses_inside_a_running_loop(loop):
    async def inner():
        coro = asyncio.sleep(0)
        try:
            evloop.run(coro)
        finally:
            coro.close()

    with pytest.raises(RuntimeError, match="cannot be called from a running event loop"):
        loop.run_until_complete(inner())


def test_unclosed_loop_warns():
    lp = evloop.new_event_loop()
    with pytest.warns(ResourceWarning, match="unclosed event loop"):
        lp.__del__()
    assert lp.is_closed()


@pytest.mark.skipif(sys.version_info < (3, 12), reason="the loop_factory path of asyncio.run is 3.12+")
def test_asyncio_run_loop_factory():
    async def main():
        return type(asyncio.get_running_loop())

    assert asyncio.run(main(), loop_factory=evloop.new_event_loop) is evloop.Loop


def test_debug_mode_current_handle_in_reports(loop, caplog):
    loop.set_debug(True)

    def report():
        assert loop._current_handle is h
        loop.call_exception_handler({"message": "reported"})

    h = loop.call_soon(report)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        run_briefly(loop)
    assert loop._current_handle is None
    assert "reported" in caplog.text
    assert "Handle created at (most recent call last):" in caplog.text


def test_everything_scheduled_before_a_run_is_ready_in_its_first_iteration(loop):
    # asyncio keeps such callbacks in its ready queue: one iteration runs
    # them all, however many (evloop's inbox alone would take a batch of
    # 1024 an iteration).
    seen = []
    for i in range(5000):
        loop.call_soon(seen.append, i)
    loop.stop()
    loop.run_forever()
    assert seen == list(range(5000))


def _mixed_order(lp):
    """A scenario mixing callbacks, timers and an fd watcher over several
    iterations; returns the order things ran in."""
    import socket

    order = []
    a, b = socket.socketpair()

    def note(tag):
        order.append(tag)

    def first():
        note("first")
        lp.call_soon(note, "soon-1")
        lp.call_at(lp.time() - 1, note, "timer-past")
        lp.call_later(0, note, "timer-0")
        lp.call_soon(second)
        lp.call_soon_threadsafe(note, "threadsafe-same-thread")
        lp.call_soon(note, "soon-2")

    def second():
        note("second")
        lp.add_writer(a, writable)
        lp.call_soon(note, "soon-from-second")

    def writable():
        note("writable")
        lp.remove_writer(a)
        lp.call_soon(note, "soon-from-writer")
        lp.call_soon(lp.stop)

    lp.call_soon(first)
    try:
        lp.run_forever()
    finally:
        a.close()
        b.close()
        lp.close()
    return order


def test_order_matches_asyncio():
    assert _mixed_order(evloop.new_event_loop()) == _mixed_order(asyncio.SelectorEventLoop())


def test_debug_from_dev_mode():
    import subprocess

    out = subprocess.run(
        [sys.executable, "-X", "dev", "-c", "import evloop; print(evloop.new_event_loop().get_debug())"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == "True", out.stderr
