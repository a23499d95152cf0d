"""evloop: a drop-in asyncio event loop for CPython, built on the evloop
Rust crate.

    import evloop
    evloop.run(main())            # asyncio.run(main()) on an evloop loop

or ``evloop.install()`` to make asyncio create evloop loops, or
``evloop.new_event_loop()`` for a loop of your own.
"""

import asyncio as _asyncio

from . import _compat
from ._evloop import Handle, TimerHandle
from ._loop import Loop

__all__ = ("Loop", "new_event_loop", "EventLoopPolicy", "install", "run", "Handle", "TimerHandle")
__version__ = "0.1.0"


def new_event_loop():
    """A new evloop event loop."""
    return Loop()


class EventLoopPolicy(_compat.BasePolicy):
    """An asyncio event-loop policy whose loops are evloop loops (one per
    thread, as asyncio's default policy)."""

    def _loop_factory(self):
        return new_event_loop()

    def __repr__(self):
        return f"<{type(self).__name__}>"


def install():
    """Make asyncio create evloop loops: sets ``EventLoopPolicy()`` as the
    event-loop policy."""
    _compat.set_policy(EventLoopPolicy())


def run(main, *, debug=None):
    """Run the coroutine ``main`` on a new evloop loop and return its
    result, as ``asyncio.run(main, debug=debug)`` does (tasks left running
    are cancelled, async generators and the default executor shut down,
    the loop closed)."""
    return _compat.run(main, debug=debug, loop_factory=new_event_loop)
