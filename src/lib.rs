//! # evloop
//!
//! Python asyncio's event-loop model for multi-threaded Rust services: a
//! loop per thread chosen through a policy object, `call_soon` /
//! `call_later` / `call_at` / `call_soon_threadsafe` with cancellable
//! handles, futures and tasks, fd watching on mio, and `run_in_executor`
//! on a work-stealing thread pool.
//!
//! ```
//! use evloop::EventLoop;
//! use std::time::Duration;
//!
//! let lp = EventLoop::new()?;
//! let task = lp.create_task(async {
//!     evloop::sleep(Duration::from_millis(5)).await?;
//!     Ok::<_, evloop::Error>("done")
//! })?;
//! assert_eq!(lp.run_until_complete(task)?.unwrap()?, "done");
//! lp.close()?;
//! # Ok::<(), evloop::Error>(())
//! ```
//!
//! The map of the code is `ARCHITECTURE.md`; the asyncio-to-evloop map is
//! in the README. Unix only today (Linux first).

#![warn(missing_docs)]

#[cfg(not(unix))]
compile_error!(
    "evloop supports Unix only today (Linux first): it is built on file descriptors and epoll/kqueue"
);

mod atomic_waker;
mod block_pool;
mod cancellation;
mod compat;
mod concurrent;
mod error;
mod event_loop;
mod exception;
mod executor;
mod future;
mod handle;
mod loop_cell;
mod net;
mod policy;
mod process;
mod reactor;
mod readiness;
mod remote;
mod runnable;
mod runners;
mod sched;
mod services;
mod signals;
mod sync;
mod task;
mod timers;
mod util;
mod waiters;

#[cfg(loom)]
#[doc(hidden)]
pub mod loom_api;

#[cfg(feature = "hyper")]
pub use compat::hyper::{HyperExecutor, HyperTimer};
pub use concurrent::{ConcurrentAwait, ConcurrentFuture};
pub use error::{Error, PanicPayload, SharedError, TaskError, panic_message};
pub use event_loop::{
    BoxFuture, DEBUG_ENV, DEFAULT_SPIN, EventLoop, ExceptionHandler, IdleHook, Stats, TaskFactory,
    TaskSpec, WeakEventLoop,
};
pub use exception::{
    ExceptionContext, HandleInfo, TaskInfo, TransportInfo, default_exception_handler,
};
pub use executor::{Executor, Job, ThreadPoolBuilder, ThreadPoolExecutor, default_max_workers};
pub use future::{FutureAwait, FutureRead, LoopFuture};
pub use handle::{CallbackId, Handle, TimerHandle};
pub use net::connect::{ConnectOptions, DatagramOptions};
pub use net::datagram::DatagramProtocol;
pub use net::datagram::DatagramTransport;
pub use net::dns::{AddrInfo, AddrInfoHints};
pub use net::extra::{ExtraInfo, TransportFd};
pub use net::flow::DEFAULT_HIGH_WATER;
pub use net::server::{Server, ServerOptions};
pub use net::start_tls::StartTlsOptions;
pub use net::streams::{DEFAULT_LIMIT, StreamFeeder, StreamReader, StreamWriter};
pub use net::tcp::{TcpListener, TcpStream};
pub use net::tls::{DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_SHUTDOWN_TIMEOUT, TlsContext};
pub use net::transport::{BufferedProtocol, Protocol, Transport};
#[cfg(feature = "native-roots")]
pub use net::trust::default_client_config;
pub use policy::{
    DefaultEventLoopPolicy, EventLoopPolicy, get_event_loop, get_event_loop_policy,
    get_running_loop, new_event_loop, set_event_loop, set_event_loop_policy,
};
pub use process::{Process, Stdio, SubprocessOptions, SubprocessProtocol, SubprocessTransport};
pub use runners::{
    Gather, Shield, Sleep, WaitFor, all_tasks, current_task, gather, run, run_coroutine_threadsafe,
    shield, sleep, sleep_until, spawn, wait_for,
};
/// rustls, whose configurations (`ClientConfig`, `ServerConfig`) evloop's
/// TLS takes: the same version evloop is built with.
pub use rustls;
pub use task::{Task, TaskAwait, TaskAwaitMut, TaskDone, TaskOutcome, TaskRead, spawn_local};
