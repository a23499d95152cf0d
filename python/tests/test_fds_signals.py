"""fd watching (add_reader / add_writer, level-triggered) and signals
(add_signal_handler, Ctrl+C)."""

import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading

import pytest

import evloop
from conftest import run_briefly, run_forever_bounded

TIMEOUT = 30


def test_reader_is_level_triggered_until_drained(loop):
    a, b = socket.socketpair()
    a.setblocking(False)
    calls = []

    def on_readable(tag):
        calls.append(tag)
        if len(calls) == 3:
            # Still readable: called again each iteration until drained.
            assert a.recv(100) == b"xy"

    try:
        loop.add_reader(a, on_readable, "r")  # a socket object
        b.send(b"xy")
        for _ in range(6):
            run_briefly(loop)
        assert calls == ["r", "r", "r"]
        assert loop.remove_reader(a.fileno()) is True
        assert loop.remove_reader(a.fileno()) is False
        b.send(b"z")
        run_briefly(loop, 3)
        assert calls == ["r", "r", "r"]
    finally:
        a.close()
        b.close()


def test_writer_and_replacing_a_reader(loop):
    a, b = socket.socketpair()
    seen = []
    try:
        loop.add_writer(a.fileno(), seen.append, "w")
        run_briefly(loop)
        assert seen == ["w"]
        assert loop.remove_writer(a) is True
        b.send(b"1")
        loop.add_reader(a, seen.append, "first")
        loop.add_reader(a, seen.append, "second")  # replaces
        run_briefly(loop)
        assert seen == ["w", "second"]
    finally:
        loop.remove_reader(a)
        a.close()
        b.close()


def test_reader_exception_goes_to_handler(loop):
    a, b = socket.socketpair()
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    def bad():
        loop.remove_reader(a)
        raise OSError("reader failed")

    try:
        loop.add_reader(a, bad)
        b.send(b"x")
        run_briefly(loop, 2)
        assert [type(c["exception"]) for c in contexts] == [OSError]
    finally:
        a.close()
        b.close()


def test_close_stops_watching(loop):
    a, b = socket.socketpair()
    try:
        loop.add_reader(a, print)
        loop.close()
        assert loop.remove_reader(a) is False
    finally:
        a.close()
        b.close()


def test_add_signal_handler_one_callback_per_signal(loop):
    seen = []
    loop.add_signal_handler(signal.SIGUSR1, seen.append, "usr1")
    try:
        for _ in range(3):
            os.kill(os.getpid(), signal.SIGUSR1)
        def check():
            if len(seen) >= 3:
                loop.stop()
            else:
                loop.call_later(0.001, check)

        loop.call_soon(check)
        run_forever_bounded(loop)
        assert seen == ["usr1"] * 3
    finally:
        assert loop.remove_signal_handler(signal.SIGUSR1) is True
    assert loop.remove_signal_handler(signal.SIGUSR1) is False
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_signal_handler_errors(loop):
    with pytest.raises(TypeError, match="sig must be an int, not 'x'"):
        loop.add_signal_handler("x", print)
    with pytest.raises(ValueError, match="invalid signal number 100000"):
        loop.add_signal_handler(100000, print)
    with pytest.raises(RuntimeError, match="sig 9 cannot be caught"):
        loop.add_signal_handler(signal.SIGKILL, print)

    async def coro():
        pass

    with pytest.raises(TypeError, match=r"coroutines cannot be used with add_signal_handler\(\)"):
        loop.add_signal_handler(signal.SIGUSR2, coro)
    errors = []

    def off_main():
        other = evloop.new_event_loop()
        try:
            other.add_signal_handler(signal.SIGUSR2, print)
        except RuntimeError as e:
            errors.append(str(e))
        finally:
            other.close()

    t = threading.Thread(target=off_main)
    t.start()
    t.join(TIMEOUT)
    assert len(errors) == 1 and "main thread" in errors[0]


def test_close_removes_signal_handlers():
    lp = evloop.new_event_loop()
    lp.add_signal_handler(signal.SIGUSR2, print)
    lp.close()
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL


CTRL_C_PROGRAM = textwrap.dedent(
    """
    import asyncio, sys, evloop

    async def main():
        print("ready", flush=True)
        await asyncio.sleep(60)

    if sys.argv[1] == "asyncio":
        asyncio.run(main())
    elif sys.argv[1] == "evloop":
        evloop.run(main())
    else:
        loop = evloop.new_event_loop()
        loop.call_soon(lambda: print("ready", flush=True))
        loop.run_forever()
    """
)


def _interrupt(mode):
    proc = subprocess.Popen(
        [sys.executable, "-c", CTRL_C_PROGRAM, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Bounds the read of "ready": a child that hangs first is killed, and
    # readline returns "" instead of blocking.
    killer = threading.Timer(TIMEOUT, proc.kill)
    killer.start()
    try:
        assert proc.stdout.readline() == "ready\n"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        killer.cancel()
        proc.kill()
        proc.wait()
    return proc.returncode, err.strip().splitlines()[-1]


@pytest.mark.parametrize("mode", ["evloop", "run_forever"])
def test_ctrl_c_stops_a_sleeping_loop_as_asyncio(mode):
    """SIGINT to a loop asleep in the poller ends the run with
    KeyboardInterrupt, as it ends asyncio.run."""
    expected = _interrupt("asyncio")
    assert expected[1] == "KeyboardInterrupt"
    assert _interrupt(mode) == expected
