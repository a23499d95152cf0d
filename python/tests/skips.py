"""Every CPython asyncio test that the suite runner does not run against
evloop, with the reason. Keys are ``module.Class.test``; cpython_suite.py
refuses names that do not exist.

None of these is an evloop bug: each reads or replaces a BaseEventLoop
internal, needs CPython's virtual-clock TestLoop, or tests I/O that part 2
of the front-end brings. A test that fails for another reason is fixed,
not listed here.
"""

# Transports, servers, sockets, pipes and ptys: the front-end's part 2
# (the methods raise NotImplementedError, from asyncio.AbstractEventLoop).
IO = "networking, pipes and ptys are part 2 of the Python front-end"

# CPython's TestLoop (test_utils.TestLoop) runs on a virtual clock that a
# generator advances (new_test_loop(gen), loop.advance_time); these tests
# assert exact loop.time() values of that clock. evloop runs on the real
# monotonic clock.
VIRTUAL_CLOCK = "needs CPython's TestLoop virtual clock (asserts exact loop.time() values)"

RUN_ONCE = "calls loop._run_once(), an internal of BaseEventLoop (one iteration)"
READY = "reads loop._ready, BaseEventLoop's internal ready deque"
SELECTOR = "mocks loop._selector, an internal of the selector event loop"
INTERNALS = "calls or reads BaseEventLoop internals (_add_callback, _scheduled, _timer_cancelled_count, transport factories)"
HANDLE_CLASSES = (
    "asserts isinstance(handle, asyncio.Handle / asyncio.TimerHandle): evloop's handles are "
    "Rust classes with the same interface, not subclasses of asyncio's Python classes (as uvloop's)"
)

SKIPS = {}


def _skip(reason, *names):
    for name in names:
        SKIPS[name] = reason




_skip(
    IO,
    "test_events.EventLoopTestsMixin.test_write_pty",
    "test_events.EventLoopTestsMixin.test_bidirectional_pty",
    "test_events.EventLoopTestsMixin.test_connect_accepted_socket",
    "test_events.EventLoopTestsMixin.test_connect_accepted_socket_ssl_timeout_for_plain_socket",
    "test_events.EventLoopTestsMixin.test_create_connection",
    "test_events.EventLoopTestsMixin.test_create_connection_local_addr",
    "test_events.EventLoopTestsMixin.test_create_connection_local_addr_in_use",
    "test_events.EventLoopTestsMixin.test_create_connection_local_addr_nomatch_family",
    "test_events.EventLoopTestsMixin.test_create_connection_local_addr_skip_different_family",
    "test_events.EventLoopTestsMixin.test_create_datagram_endpoint",
    "test_events.EventLoopTestsMixin.test_create_datagram_endpoint_ipv6",
    "test_events.EventLoopTestsMixin.test_create_datagram_endpoint_sock",
    "test_events.EventLoopTestsMixin.test_create_server",
    "test_events.EventLoopTestsMixin.test_create_server_addr_in_use",
    "test_events.EventLoopTestsMixin.test_create_server_dual_stack",
    "test_events.EventLoopTestsMixin.test_create_server_multiple_hosts_ipv4",
    "test_events.EventLoopTestsMixin.test_create_server_multiple_hosts_ipv6",
    "test_events.EventLoopTestsMixin.test_create_server_reuse_port",
    "test_events.EventLoopTestsMixin.test_create_server_sock",
    "test_events.EventLoopTestsMixin.test_create_server_ssl",
    "test_events.EventLoopTestsMixin.test_create_server_ssl_match_failed",
    "test_events.EventLoopTestsMixin.test_create_server_ssl_verified",
    "test_events.EventLoopTestsMixin.test_create_server_ssl_verify_failed",
    "test_events.EventLoopTestsMixin.test_create_ssl_connection",
    "test_events.EventLoopTestsMixin.test_create_ssl_unix_connection",
    "test_events.EventLoopTestsMixin.test_create_unix_connection",
    "test_events.EventLoopTestsMixin.test_create_unix_server",
    "test_events.EventLoopTestsMixin.test_create_unix_server_path_socket_error",
    "test_events.EventLoopTestsMixin.test_create_unix_server_ssl",
    "test_events.EventLoopTestsMixin.test_create_unix_server_ssl_verified",
    "test_events.EventLoopTestsMixin.test_create_unix_server_ssl_verify_failed",
    "test_events.EventLoopTestsMixin.test_prompt_cancellation",
    "test_events.EventLoopTestsMixin.test_read_pipe",
    "test_events.EventLoopTestsMixin.test_read_pty_output",
    "test_events.EventLoopTestsMixin.test_server_close",
    "test_events.EventLoopTestsMixin.test_ssl_connect_accepted_socket",
    "test_events.EventLoopTestsMixin.test_unclosed_pipe_transport",
    "test_events.EventLoopTestsMixin.test_write_pipe",
    "test_events.EventLoopTestsMixin.test_write_pipe_disconnect_on_close",
)

_skip(
    VIRTUAL_CLOCK,
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_as_completed_reverse_wait",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_as_completed_with_timeout",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_sleep",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_stop_while_run_in_complete",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_task_cancel_sleeping_task",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_wait",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_wait_concurrent_complete",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_wait_first_completed",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_wait_first_exception",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_wait_first_exception_in_wait",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_wait_with_exception",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_wait_with_iterator_of_tasks",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_wait_with_timeout",
    "test_tasks.CTask_CFuture_SubclassTests.test_as_completed_reverse_wait",
    "test_tasks.CTask_CFuture_SubclassTests.test_as_completed_with_timeout",
    "test_tasks.CTask_CFuture_SubclassTests.test_sleep",
    "test_tasks.CTask_CFuture_SubclassTests.test_stop_while_run_in_complete",
    "test_tasks.CTask_CFuture_SubclassTests.test_task_cancel_sleeping_task",
    "test_tasks.CTask_CFuture_SubclassTests.test_wait",
    "test_tasks.CTask_CFuture_SubclassTests.test_wait_concurrent_complete",
    "test_tasks.CTask_CFuture_SubclassTests.test_wait_first_completed",
    "test_tasks.CTask_CFuture_SubclassTests.test_wait_first_exception",
    "test_tasks.CTask_CFuture_SubclassTests.test_wait_first_exception_in_wait",
    "test_tasks.CTask_CFuture_SubclassTests.test_wait_with_exception",
    "test_tasks.CTask_CFuture_SubclassTests.test_wait_with_iterator_of_tasks",
    "test_tasks.CTask_CFuture_SubclassTests.test_wait_with_timeout",
    "test_tasks.CTask_CFuture_Tests.test_as_completed",
    "test_tasks.CTask_CFuture_Tests.test_as_completed_reverse_wait",
    "test_tasks.CTask_CFuture_Tests.test_as_completed_with_timeout",
    "test_tasks.CTask_CFuture_Tests.test_sleep",
    "test_tasks.CTask_CFuture_Tests.test_stop_while_run_in_complete",
    "test_tasks.CTask_CFuture_Tests.test_task_cancel_sleeping_task",
    "test_tasks.CTask_CFuture_Tests.test_wait",
    "test_tasks.CTask_CFuture_Tests.test_wait_concurrent_complete",
    "test_tasks.CTask_CFuture_Tests.test_wait_first_completed",
    "test_tasks.CTask_CFuture_Tests.test_wait_first_exception",
    "test_tasks.CTask_CFuture_Tests.test_wait_first_exception_in_wait",
    "test_tasks.CTask_CFuture_Tests.test_wait_with_exception",
    "test_tasks.CTask_CFuture_Tests.test_wait_with_iterator_of_tasks",
    "test_tasks.CTask_CFuture_Tests.test_wait_with_timeout",
    "test_tasks.CTask_PyFuture_Tests.test_as_completed",
    "test_tasks.CTask_PyFuture_Tests.test_as_completed_reverse_wait",
    "test_tasks.CTask_PyFuture_Tests.test_as_completed_with_timeout",
    "test_tasks.CTask_PyFuture_Tests.test_sleep",
    "test_tasks.CTask_PyFuture_Tests.test_stop_while_run_in_complete",
    "test_tasks.CTask_PyFuture_Tests.test_task_cancel_sleeping_task",
    "test_tasks.CTask_PyFuture_Tests.test_wait",
    "test_tasks.CTask_PyFuture_Tests.test_wait_concurrent_complete",
    "test_tasks.CTask_PyFuture_Tests.test_wait_first_completed",
    "test_tasks.CTask_PyFuture_Tests.test_wait_first_exception",
    "test_tasks.CTask_PyFuture_Tests.test_wait_first_exception_in_wait",
    "test_tasks.CTask_PyFuture_Tests.test_wait_with_exception",
    "test_tasks.CTask_PyFuture_Tests.test_wait_with_iterator_of_tasks",
    "test_tasks.CTask_PyFuture_Tests.test_wait_with_timeout",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_as_completed_reverse_wait",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_as_completed_with_timeout",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_sleep",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_stop_while_run_in_complete",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_task_cancel_sleeping_task",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_wait",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_wait_concurrent_complete",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_wait_first_completed",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_wait_first_exception",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_wait_first_exception_in_wait",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_wait_with_exception",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_wait_with_iterator_of_tasks",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_wait_with_timeout",
    "test_tasks.PyTask_CFuture_Tests.test_as_completed",
    "test_tasks.PyTask_CFuture_Tests.test_as_completed_reverse_wait",
    "test_tasks.PyTask_CFuture_Tests.test_as_completed_with_timeout",
    "test_tasks.PyTask_CFuture_Tests.test_sleep",
    "test_tasks.PyTask_CFuture_Tests.test_stop_while_run_in_complete",
    "test_tasks.PyTask_CFuture_Tests.test_task_cancel_sleeping_task",
    "test_tasks.PyTask_CFuture_Tests.test_wait",
    "test_tasks.PyTask_CFuture_Tests.test_wait_concurrent_complete",
    "test_tasks.PyTask_CFuture_Tests.test_wait_first_completed",
    "test_tasks.PyTask_CFuture_Tests.test_wait_first_exception",
    "test_tasks.PyTask_CFuture_Tests.test_wait_first_exception_in_wait",
    "test_tasks.PyTask_CFuture_Tests.test_wait_with_exception",
    "test_tasks.PyTask_CFuture_Tests.test_wait_with_iterator_of_tasks",
    "test_tasks.PyTask_CFuture_Tests.test_wait_with_timeout",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_as_completed_reverse_wait",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_as_completed_with_timeout",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_sleep",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_stop_while_run_in_complete",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_task_cancel_sleeping_task",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_wait",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_wait_concurrent_complete",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_wait_first_completed",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_wait_first_exception",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_wait_first_exception_in_wait",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_wait_with_exception",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_wait_with_iterator_of_tasks",
    "test_tasks.PyTask_PyFuture_Tests.test_as_completed",
    "test_tasks.PyTask_PyFuture_Tests.test_as_completed_reverse_wait",
    "test_tasks.PyTask_PyFuture_Tests.test_as_completed_with_timeout",
    "test_tasks.PyTask_PyFuture_Tests.test_sleep",
    "test_tasks.PyTask_PyFuture_Tests.test_stop_while_run_in_complete",
    "test_tasks.PyTask_PyFuture_Tests.test_task_cancel_sleeping_task",
    "test_tasks.PyTask_PyFuture_Tests.test_wait",
    "test_tasks.PyTask_PyFuture_Tests.test_wait_concurrent_complete",
    "test_tasks.PyTask_PyFuture_Tests.test_wait_first_completed",
    "test_tasks.PyTask_PyFuture_Tests.test_wait_first_exception",
    "test_tasks.PyTask_PyFuture_Tests.test_wait_first_exception_in_wait",
    "test_tasks.PyTask_PyFuture_Tests.test_wait_with_exception",
    "test_tasks.PyTask_PyFuture_Tests.test_wait_with_iterator_of_tasks",
    "test_tasks.PyTask_PyFuture_Tests.test_wait_with_timeout",
)

_skip(
    RUN_ONCE,
    "test_base_events.BaseEventLoopTests.test_set_exc_handler_broken",
    "test_events.EventLoopTestsMixin.test_timeout_rounding",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_as_completed",
    "test_tasks.CTaskSubclass_PyFuture_Tests.test_log_destroyed_pending_task",
    "test_tasks.CTask_CFuture_SubclassTests.test_as_completed",
    "test_tasks.CTask_CFuture_SubclassTests.test_log_destroyed_pending_task",
    "test_tasks.CTask_CFuture_Tests.test_log_destroyed_pending_task",
    "test_tasks.CTask_PyFuture_Tests.test_log_destroyed_pending_task",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_as_completed",
    "test_tasks.PyTask_CFutureSubclass_Tests.test_log_destroyed_pending_task",
    "test_tasks.PyTask_CFuture_Tests.test_log_destroyed_pending_task",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_as_completed",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_log_destroyed_pending_task",
    "test_tasks.PyTask_PyFuture_Tests.test_log_destroyed_pending_task",
)

_skip(
    READY,
    "test_tasks.CoroutineGatherTests.test_duplicate_coroutines",
    "test_tasks.CoroutineGatherTests.test_issue46672",
    "test_tasks.CoroutineGatherTests.test_one_exception",
    "test_tasks.CoroutineGatherTests.test_result_exception_success",
    "test_tasks.CoroutineGatherTests.test_return_exceptions",
    "test_tasks.CoroutineGatherTests.test_success",
    "test_tasks.FutureGatherTests.test_constructor_empty_sequence_use_global_loop",
    "test_tasks.FutureGatherTests.test_constructor_empty_sequence_use_running_loop",
    "test_tasks.FutureGatherTests.test_constructor_homogenous_futures",
    "test_tasks.FutureGatherTests.test_one_cancellation",
    "test_tasks.FutureGatherTests.test_one_exception",
    "test_tasks.FutureGatherTests.test_result_exception_one_cancellation",
    "test_tasks.FutureGatherTests.test_result_exception_success",
    "test_tasks.FutureGatherTests.test_return_exceptions",
    "test_tasks.FutureGatherTests.test_success",
    "test_tasks.PyTask_PyFuture_SubclassTests.test_wait_with_timeout",
)

_skip(
    SELECTOR,
    "test_base_events.BaseEventLoopTests.test_run_forever_pre_stopped",
    "test_base_events.BaseEventLoopTests.test_set_exc_handler_custom",
    "test_base_events.BaseEventLoopTests.test_single_selecter_event_callback_after_stopping",
)

_skip(
    INTERNALS,
    "test_base_events.BaseEventLoopTests.test__add_callback_cancelled_handle",
    "test_base_events.BaseEventLoopTests.test__add_callback_handle",
    "test_base_events.BaseEventLoopTests.test__run_once",
    "test_base_events.BaseEventLoopTests.test__run_once_cancelled_event_cleanup",
    "test_base_events.BaseEventLoopTests.test__run_once_schedule_handle",
    "test_base_events.BaseEventLoopTests.test_not_implemented",
)

_skip(
    HANDLE_CLASSES,
    "test_base_events.BaseEventLoopTests.test_call_later",
    "test_base_events.BaseEventLoopTests.test_call_soon",
)
