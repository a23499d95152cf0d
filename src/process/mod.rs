//! asyncio's "Running Subprocesses": the loop methods
//! [`EventLoop::subprocess_exec`] / [`EventLoop::subprocess_shell`] with a
//! [`SubprocessProtocol`] and a [`SubprocessTransport`], and the
//! high-level [`EventLoop::create_subprocess_exec`] /
//! [`EventLoop::create_subprocess_shell`] returning a [`Process`] whose
//! pipes are streams.
//!
//! A child is started with `std::process::Command` (fork and exec, with
//! exec failures reported as errors of the call), on the loop's thread as
//! asyncio does. Each of its standard streams is a [`Stdio`]: a pipe to
//! this process, driven by the loop's pipe transports (see
//! `net::pipe`), `/dev/null`, this process's own stream, a given
//! descriptor, or for stderr the same as stdout. How its exit is watched,
//! and why no child is ever left a zombie, is in `watch`.
//!
//! Any loop on any thread may start children; each loop watches its own.

mod streams;
mod transport;
mod watch;

pub use streams::Process;
pub use transport::SubprocessTransport;

use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::net::streams::StreamReaderProtocol;
use crate::net::streams::core::StreamCore;
use crate::net::transport::{Kind, StreamProtocol};
use std::any::Any;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use transport::{PipeProtocol, SubInner};
use watch::ChildCell;

/// Where one of a child's standard streams goes (asyncio's `stdin=`,
/// `stdout=`, `stderr=` values).
#[derive(Debug)]
#[non_exhaustive]
pub enum Stdio {
    /// A new pipe to this process (asyncio: `subprocess.PIPE`), driven by
    /// a pipe transport of the loop.
    Pipe,
    /// `/dev/null` (asyncio: `subprocess.DEVNULL`).
    DevNull,
    /// This process's own stream (asyncio: `None`).
    Inherit,
    /// The given descriptor (asyncio: a file object or descriptor): the
    /// child gets it; it is closed here once the child started.
    Fd(OwnedFd),
    /// For stderr only: the same as stdout (asyncio: `subprocess.STDOUT`).
    Stdout,
}

/// The options of a subprocess (asyncio's keyword arguments of
/// `subprocess_exec` and `create_subprocess_exec`, and the `Popen` ones
/// that apply). `None` for a stream means the method's default: a pipe for
/// [`EventLoop::subprocess_exec`] (as asyncio's loop methods), this
/// process's own stream for [`EventLoop::create_subprocess_exec`] (as
/// `asyncio.create_subprocess_exec`).
#[derive(Debug, Default)]
pub struct SubprocessOptions {
    /// The child's stdin.
    pub stdin: Option<Stdio>,
    /// The child's stdout.
    pub stdout: Option<Stdio>,
    /// The child's stderr.
    pub stderr: Option<Stdio>,
    /// The child's working directory (`cwd=`).
    pub cwd: Option<PathBuf>,
    /// The child's whole environment (`env=`); `None` inherits this
    /// process's.
    pub env: Option<Vec<(OsString, OsString)>>,
    /// Put the child in process group `pgid` (`process_group=`; 0: a new
    /// group led by the child).
    pub process_group: Option<i32>,
    /// The limit of the [`Process`]'s stream readers (asyncio's `limit=`,
    /// default [`DEFAULT_LIMIT`](crate::DEFAULT_LIMIT)).
    pub limit: Option<usize>,
}

/// A subprocess protocol (asyncio: `asyncio.SubprocessProtocol`): told of
/// the child's output pipe by pipe, of each pipe's end, and of the
/// child's exit. Called on the loop's thread, one callback at a time;
/// calls due before `connection_made` wait for it, in order.
/// `connection_lost` comes last, once the child has exited and every pipe
/// has closed.
pub trait SubprocessProtocol: Any + Send {
    /// The child is running and its pipes are connected (asyncio:
    /// `connection_made`).
    fn connection_made(&mut self, transport: SubprocessTransport) {
        let _ = transport;
    }

    /// The child wrote `data` to its stdout (`fd` 1) or stderr (2)
    /// (asyncio: `pipe_data_received`).
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        let _ = (fd, data);
    }

    /// One of the child's pipes closed (asyncio: `pipe_connection_lost`):
    /// `None` at a clean end, `Some(error)` otherwise.
    fn pipe_connection_lost(&mut self, fd: i32, error: Option<io::Error>) {
        let _ = (fd, error);
    }

    /// The child exited (asyncio: `process_exited`); its return code is
    /// [`SubprocessTransport::get_returncode`].
    fn process_exited(&mut self) {}

    /// The child exited and all its pipes closed (asyncio:
    /// `connection_lost`): the last call.
    fn connection_lost(&mut self, error: Option<io::Error>) {
        let _ = error;
    }

    /// The stdin pipe's buffer went over its high-water mark.
    fn pause_writing(&mut self) {}

    /// The stdin pipe's buffer drained below its low-water mark.
    fn resume_writing(&mut self) {}
}

/// A new pipe, both ends close-on-exec: (read end, write end).
fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // Safety: `fds` is a valid out-array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // Safety: both descriptors were just created and are owned by nobody
    // else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A started child and this process's ends of its pipes.
struct Spawned {
    child: std::process::Child,
    ends: [Option<OwnedFd>; 3],
}

/// Python's `OSError` for an exec failure: "[Errno 2] No such file or
/// directory: 'prog'".
fn spawn_error(program: &OsStr, e: io::Error) -> Error {
    let text = e.to_string();
    let why = text.split(" (os error").next().unwrap_or(&text).to_string();
    Error::Os {
        context: format!("{why}: '{}'", program.to_string_lossy()),
        source: e,
    }
}

fn spawn(
    mut cmd: Command,
    program: &OsStr,
    options: &mut SubprocessOptions,
    default: fn() -> Stdio,
) -> Result<Spawned, Error> {
    let mut ends: [Option<OwnedFd>; 3] = [None, None, None];
    let stdin = options.stdin.take().unwrap_or_else(default);
    let stdout = options.stdout.take().unwrap_or_else(default);
    let stderr = options.stderr.take().unwrap_or_else(default);
    // The child's end of its stdout, kept to give stderr too (STDOUT).
    let mut child_stdout: Option<OwnedFd> = None;
    let child_side = |s: Stdio,
                      fd: usize,
                      ends: &mut [Option<OwnedFd>; 3]|
     -> Result<(std::process::Stdio, Option<OwnedFd>), Error> {
        Ok(match s {
            Stdio::Pipe => {
                let (r, w) = pipe()?;
                let (ours, theirs) = if fd == 0 { (w, r) } else { (r, w) };
                ends[fd] = Some(ours);
                let copy = theirs.try_clone()?;
                (std::process::Stdio::from(theirs), Some(copy))
            }
            Stdio::DevNull => (std::process::Stdio::null(), None),
            Stdio::Inherit => (std::process::Stdio::inherit(), None),
            Stdio::Fd(f) => {
                let copy = f.try_clone()?;
                (std::process::Stdio::from(f), Some(copy))
            }
            Stdio::Stdout => {
                return Err(Error::InvalidArgument(
                    "STDOUT can only be used for stderr".into(),
                ));
            }
        })
    };
    let (s, _) = child_side(stdin, 0, &mut ends)?;
    cmd.stdin(s);
    let stdout_inherited = matches!(stdout, Stdio::Inherit);
    let stdout_null = matches!(stdout, Stdio::DevNull);
    let (s, copy) = child_side(stdout, 1, &mut ends)?;
    cmd.stdout(s);
    child_stdout = child_stdout.or(copy);
    let s = match stderr {
        Stdio::Stdout => match child_stdout.take() {
            Some(fd) => std::process::Stdio::from(fd),
            None if stdout_null => std::process::Stdio::null(),
            None if stdout_inherited => {
                std::process::Stdio::from(io::stdout().as_fd().try_clone_to_owned()?)
            }
            None => std::process::Stdio::inherit(),
        },
        other => child_side(other, 2, &mut ends)?.0,
    };
    cmd.stderr(s);
    drop(child_stdout);
    if let Some(cwd) = &options.cwd {
        cmd.current_dir(cwd);
    }
    if let Some(env) = &options.env {
        cmd.env_clear();
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
    }
    if let Some(pgid) = options.process_group {
        cmd.process_group(pgid);
    }
    let child = cmd.spawn().map_err(|e| spawn_error(program, e))?;
    // `cmd` drops here, closing the child's ends in this process.
    drop(cmd);
    Ok(Spawned { child, ends })
}

/// How the pipes of a new child are driven.
pub(crate) enum PipeMode {
    /// Forwarded to a [`SubprocessProtocol`] (the loop methods).
    Protocol,
    /// Streams of a [`Process`], whose readers have this limit: each pipe
    /// gets a stream core (returned with the transport) and the streams'
    /// own protocol.
    Streams(usize),
}

/// The stream cores of a [`Process`]'s pipes, by fd.
pub(crate) type PipeCores = [Option<Arc<StreamCore>>; 3];

impl EventLoop {
    /// Starts `program` with `args` and drives it with the protocol
    /// `protocol_factory` builds (asyncio: `loop.subprocess_exec`).
    /// Streams not set in `options` are pipes, as asyncio's default.
    /// Returns the transport once every pipe is connected; the protocol
    /// lives in it ([`SubprocessTransport::with_protocol`]).
    ///
    /// Errors: [`Error::Os`] when the program cannot be run, as Python's
    /// `OSError` ("[Errno 2] No such file or directory: 'prog'", the OS
    /// error inside); [`Error::InvalidArgument`] for `Stdio::Stdout`
    /// given to stdin or stdout; [`Error::WrongThread`], [`Error::Closed`].
    /// Nothing is left behind on error: pipes are closed, and a child
    /// that started is killed and reaped.
    pub async fn subprocess_exec<P, F, I, S>(
        &self,
        protocol_factory: F,
        program: impl AsRef<OsStr>,
        args: I,
        options: SubprocessOptions,
    ) -> Result<SubprocessTransport, Error>
    where
        P: SubprocessProtocol,
        F: FnOnce() -> P,
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args);
        self.subprocess_command(
            cmd,
            program.as_ref(),
            options,
            || Stdio::Pipe,
            Box::new(protocol_factory()),
            PipeMode::Protocol,
        )
        .await
        .map(|(transport, _)| transport)
    }

    /// Runs `cmd` with the shell, `/bin/sh -c cmd` (asyncio:
    /// `loop.subprocess_shell`); as [`EventLoop::subprocess_exec`]
    /// otherwise. Quote what you interpolate into `cmd`.
    pub async fn subprocess_shell<P, F>(
        &self,
        protocol_factory: F,
        cmd: &str,
        options: SubprocessOptions,
    ) -> Result<SubprocessTransport, Error>
    where
        P: SubprocessProtocol,
        F: FnOnce() -> P,
    {
        self.subprocess_command(
            shell(cmd),
            OsStr::new("/bin/sh"),
            options,
            || Stdio::Pipe,
            Box::new(protocol_factory()),
            PipeMode::Protocol,
        )
        .await
        .map(|(transport, _)| transport)
    }

    /// Starts `cmd` and connects its pipes; the common part of every
    /// subprocess call.
    pub(crate) async fn subprocess_command(
        &self,
        cmd: Command,
        program: &OsStr,
        mut options: SubprocessOptions,
        default: fn() -> Stdio,
        protocol: Box<dyn SubprocessProtocol>,
        mode: PipeMode,
    ) -> Result<(SubprocessTransport, PipeCores), Error> {
        if self.is_closed() {
            return Err(Error::Closed);
        }
        if !crate::sched::holds_core(self.inner.shared.id()) {
            return Err(Error::WrongThread);
        }
        let Spawned { child, ends } = spawn(cmd, program, &mut options, default)?;
        let child = ChildCell::new(child);
        let open = [ends[0].is_some(), ends[1].is_some(), ends[2].is_some()];
        let sub = SubInner::new(self, child.clone(), protocol, open);
        let on_exit: watch::OnExit = {
            let sub = sub.clone();
            Box::new(move |event| sub.child_event(event))
        };
        if let Err(e) = watch::watch(self, child.clone(), on_exit) {
            // Not watched: kill and reap it here, nothing left behind.
            let _ = watch::lock_child(&child).send_signal(libc::SIGKILL);
            watch::reap_blocking(&child);
            sub.abandon();
            return Err(e);
        }
        // Until the start completes, an error or a caller that gives up
        // (a timeout, a cancelled task) kills the child and drops the
        // protocol, which hears nothing (asyncio kills it too).
        let mut starting = Starting(Some(sub.clone()));
        let mut cores: PipeCores = [None, None, None];
        for (fd, end) in ends.into_iter().enumerate() {
            let Some(end) = end else { continue };
            let fd = fd as i32;
            let protocol = match mode {
                PipeMode::Protocol => StreamProtocol::Plain(Box::new(PipeProtocol {
                    fd,
                    sub: sub.clone(),
                })),
                PipeMode::Streams(limit) => {
                    let core = StreamCore::new(self.inner.shared.clone(), limit);
                    cores[fd as usize] = Some(core.clone());
                    StreamProtocol::Stream(Box::new(StreamReaderProtocol::new(core, None)))
                }
            };
            let kind = if fd == 0 {
                Kind::WritePipe
            } else {
                Kind::ReadPipe
            };
            let on_lost: Box<dyn FnOnce() + Send> = {
                let sub = sub.clone();
                Box::new(move || sub.pipe_closed(fd))
            };
            let pipe = self
                .connect_pipe(protocol, end, kind, Some(on_lost))
                .await?;
            sub.set_pipe(fd, pipe);
        }
        // asyncio returns once `connection_made` has run.
        starting.0 = None;
        sub.connected();
        Ok((SubprocessTransport { inner: sub }, cores))
    }
}

/// Undoes a start that did not complete (see `subprocess_command`).
struct Starting(Option<Arc<SubInner>>);

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(sub) = self.0.take() {
            sub.close();
            sub.abandon();
        }
    }
}

/// `/bin/sh -c cmd`.
fn shell(cmd: &str) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(cmd);
    c
}
