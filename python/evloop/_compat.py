"""What differs between the Python versions evloop supports (3.11 to 3.14),
in one place, and the helpers the extension module calls back into.

The extension module (``evloop._evloop``) looks these names up once per
interpreter: ``format_callback_source``, ``extract_stack``,
``log_slow_callback`` and ``create_task``.
"""

import asyncio
import sys
import warnings
from asyncio import events, format_helpers
from asyncio.log import logger

PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)
PY314 = sys.version_info >= (3, 14)

# The class a policy derives from: asyncio's default policy base (whose
# get_event_loop/set_event_loop are per thread); renamed private in 3.14,
# where policies are deprecated.
if hasattr(events, "BaseDefaultEventLoopPolicy"):
    BasePolicy = events.BaseDefaultEventLoopPolicy
else:  # 3.14+
    BasePolicy = events._BaseDefaultEventLoopPolicy


def format_callback_source(callback, args):
    """asyncio's description of a callback: ``name(args) at file:line``."""
    return format_helpers._format_callback_source(callback, args)


def extract_stack():
    """The frames of the code that called into the loop (asyncio's
    ``_source_traceback``): the caller of the extension method that calls
    this is the innermost frame kept."""
    return format_helpers.extract_stack(sys._getframe(1))


def describe_handle(handle):
    """How asyncio names a handle in its slow-callback warning: a task's
    step is named by the task."""
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return repr(owner)
    return str(handle)


def log_slow_callback(handle, seconds):
    """asyncio's debug-mode warning for a callback slower than
    ``loop.slow_callback_duration``."""
    logger.warning("Executing %s took %.3f seconds", describe_handle(handle), seconds)


def _create_task_takes_keywords():
    import inspect

    params = inspect.signature(asyncio.BaseEventLoop.create_task).parameters.values()
    return any(p.kind is p.VAR_KEYWORD for p in params)


# Whether this Python's loop.create_task passes further keywords (such as
# eager_start) on to Task or the task factory.
CREATE_TASK_TAKES_KEYWORDS = _create_task_takes_keywords()


def _name_task(task, name):
    if name is None:
        return
    set_name = getattr(task, "set_name", None)
    if set_name is None:
        warnings.warn(
            "Task.set_name() was added in Python 3.8, the method support "
            "will be mandatory for third-party task implementations since 3.13.",
            DeprecationWarning,
            stacklevel=4,
        )
    else:
        set_name(name)


def create_task(loop, factory, coro, name, context, kwargs):
    """``loop.create_task`` when a task factory is set or extra keyword
    arguments are given."""
    if factory is None:
        return asyncio.Task(coro, loop=loop, name=name, context=context, **kwargs)
    if PY314:
        # 3.14: every keyword argument goes to the factory.
        if name is not None:
            kwargs["name"] = name
        if context is not None:
            kwargs["context"] = context
        return factory(loop, coro, **kwargs)
    # 3.11 to 3.13: context only if given, the name set afterwards.
    if context is None:
        task = factory(loop, coro, **kwargs)
    else:
        task = factory(loop, coro, context=context, **kwargs)
    _name_task(task, name)
    return task


def run(main, *, debug=None, loop_factory):
    """``asyncio.run(main, debug=debug)`` on a loop from ``loop_factory``."""
    if PY312:
        return asyncio.run(main, debug=debug, loop_factory=loop_factory)
    # 3.11: asyncio.run has no loop_factory; asyncio.Runner (which
    # asyncio.run is built on) has.
    if events._get_running_loop() is not None:
        raise RuntimeError("asyncio.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=loop_factory) as runner:
        return runner.run(main)


def set_policy(policy):
    """``asyncio.set_event_loop_policy`` (deprecated in 3.14, still there)."""
    if PY314:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            asyncio.set_event_loop_policy(policy)
    else:
        asyncio.set_event_loop_policy(policy)
