//! The high-level subprocess API (asyncio's `asyncio.subprocess`):
//! [`EventLoop::create_subprocess_exec`] / `_shell` return a [`Process`]
//! whose pipes are streams: its stdin a [`StreamWriter`], its stdout and
//! stderr [`StreamReader`]s. Each pipe transport feeds its reader's
//! buffer directly (the streams' own protocol), with no copy through a
//! subprocess protocol.

use super::transport::SubprocessTransport;
use super::{PipeMode, Stdio, SubprocessOptions, SubprocessProtocol};
use crate::error::Error;
use crate::event_loop::EventLoop;
use crate::net::streams::{DEFAULT_LIMIT, StreamReader, StreamWriter};
use std::ffi::OsStr;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::process::Command;

/// A child started by [`EventLoop::create_subprocess_exec`] or
/// [`EventLoop::create_subprocess_shell`] (asyncio:
/// `asyncio.subprocess.Process`).
///
/// Dropping it does not stop the child (as tokio's `Child`, unlike
/// asyncio, whose transport kills a child it is collected with): the loop
/// still reaps it when it exits, and a loop that closes first hands it to
/// a reaper thread. Use [`Process::kill`] to stop it.
pub struct Process {
    transport: SubprocessTransport,
    /// The child's stdin, when it is a pipe (asyncio: `Process.stdin`).
    pub stdin: Option<StreamWriter>,
    /// The child's stdout, when it is a pipe.
    pub stdout: Option<StreamReader>,
    /// The child's stderr, when it is a pipe.
    pub stderr: Option<StreamReader>,
}

/// The protocol of a [`Process`]'s transport: the streams have their own,
/// so nothing is left for it to do.
struct Quiet;

impl SubprocessProtocol for Quiet {}

/// What `communicate` collects from one output pipe.
type Collected<'a> = Pin<Box<dyn Future<Output = Result<Option<Vec<u8>>, Error>> + 'a>>;

impl EventLoop {
    /// Starts `program` with `args` (asyncio:
    /// `asyncio.create_subprocess_exec`). Streams not set in `options`
    /// are inherited from this process, as asyncio's default; those set
    /// to [`Stdio::Pipe`] become the [`Process`]'s streams, with
    /// `options.limit` as the readers' limit. Errors as
    /// [`EventLoop::subprocess_exec`], and [`Error::InvalidArgument`] for
    /// a limit of 0.
    ///
    /// ```no_run
    /// use evloop::{EventLoop, Stdio, SubprocessOptions};
    ///
    /// let lp = EventLoop::new()?;
    /// let out = lp.run_until_complete(async {
    ///     let options = SubprocessOptions {
    ///         stdout: Some(Stdio::Pipe),
    ///         ..Default::default()
    ///     };
    ///     let mut child = lp.create_subprocess_exec("echo", ["hello"], options).await?;
    ///     let (out, _) = child.communicate(None).await?;
    ///     Ok::<_, evloop::Error>(out.unwrap_or_default())
    /// })??;
    /// assert_eq!(out, b"hello\n");
    /// # Ok::<(), evloop::Error>(())
    /// ```
    pub async fn create_subprocess_exec<I, S>(
        &self,
        program: impl AsRef<OsStr>,
        args: I,
        options: SubprocessOptions,
    ) -> Result<Process, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(program.as_ref());
        cmd.args(args);
        self.create_process(cmd, program.as_ref(), options).await
    }

    /// Runs `cmd` with `/bin/sh -c` (asyncio:
    /// `asyncio.create_subprocess_shell`); as
    /// [`EventLoop::create_subprocess_exec`] otherwise.
    pub async fn create_subprocess_shell(
        &self,
        cmd: &str,
        options: SubprocessOptions,
    ) -> Result<Process, Error> {
        self.create_process(super::shell(cmd), OsStr::new("/bin/sh"), options)
            .await
    }

    async fn create_process(
        &self,
        cmd: Command,
        program: &OsStr,
        options: SubprocessOptions,
    ) -> Result<Process, Error> {
        let limit = options.limit.unwrap_or(DEFAULT_LIMIT);
        if limit == 0 {
            return Err(Error::InvalidArgument("Limit cannot be <= 0".into()));
        }
        let (transport, cores) = self
            .subprocess_command(
                cmd,
                program,
                options,
                || Stdio::Inherit,
                Box::new(Quiet),
                PipeMode::Streams(limit),
            )
            .await?;
        let [core_in, core_out, core_err] = cores;
        Ok(Process {
            stdin: core_in.and_then(|core| {
                transport
                    .get_pipe_transport(0)
                    .map(|t| StreamWriter::new(t, core))
            }),
            stdout: core_out.map(StreamReader::from_core),
            stderr: core_err.map(StreamReader::from_core),
            transport,
        })
    }
}

impl Process {
    /// The child's process id (asyncio: `Process.pid`).
    pub fn pid(&self) -> u32 {
        self.transport.get_pid()
    }

    /// The return code once the child exited (asyncio:
    /// `Process.returncode`): the exit status, or minus the signal that
    /// killed it; `None` while it runs.
    pub fn returncode(&self) -> Option<i32> {
        self.transport.get_returncode()
    }

    /// The subprocess transport underneath.
    pub fn transport(&self) -> &SubprocessTransport {
        &self.transport
    }

    /// Waits for the child to exit and returns its return code (asyncio:
    /// `Process.wait`), with asyncio 3.11's rule (see
    /// [`SubprocessTransport::wait`]): a wait begun before the exit also
    /// waits for the child's pipes to close. A child writing more to a
    /// pipe than its buffer holds, with nobody reading, never finishes:
    /// read its output, or use [`Process::communicate`].
    pub async fn wait(&self) -> Result<i32, Error> {
        self.transport.wait().await
    }

    /// Sends `input` (if any) to the child's stdin and closes it, reads
    /// its stdout and stderr to the end, all at once, then waits for it
    /// to exit (asyncio: `Process.communicate`). Returns what was read:
    /// `None` for a stream that is not a pipe. A child that exits without
    /// reading all of `input` is no error (asyncio ignores the broken
    /// pipe). No deadlock, however large the input and output.
    pub async fn communicate(
        &mut self,
        input: Option<&[u8]>,
    ) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), Error> {
        let stdin = self.stdin.clone();
        let feed: Collected<'_> = Box::pin(async move {
            if let Some(stdin) = stdin {
                if let Some(input) = input {
                    let sent = match stdin.write(input) {
                        Ok(()) => stdin.drain().await,
                        Err(e) => Err(e),
                    };
                    match sent {
                        Ok(()) => {}
                        Err(Error::Io(e))
                            if matches!(
                                e.kind(),
                                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset
                            ) => {}
                        Err(e) => return Err(e),
                    }
                }
                stdin.close();
            }
            Ok(None)
        });
        let out = read_all(self.stdout.as_mut());
        let err = read_all(self.stderr.as_mut());
        let mut results = crate::runners::gather([feed, out, err]).await.into_iter();
        let mut next = || results.next().unwrap_or(Ok(None));
        let (fed, out, err) = (next(), next(), next());
        fed?;
        let (out, err) = (out?, err?);
        self.wait().await?;
        Ok((out, err))
    }

    /// Sends `sig` to the child (asyncio: `Process.send_signal`); see
    /// [`SubprocessTransport::send_signal`].
    pub fn send_signal(&self, sig: i32) -> Result<(), Error> {
        self.transport.send_signal(sig)
    }

    /// Sends `SIGTERM` (asyncio: `Process.terminate`).
    pub fn terminate(&self) -> Result<(), Error> {
        self.transport.terminate()
    }

    /// Sends `SIGKILL` (asyncio: `Process.kill`).
    pub fn kill(&self) -> Result<(), Error> {
        self.transport.kill()
    }
}

/// Reads a pipe's stream to its end (asyncio's `_read_stream`).
fn read_all(reader: Option<&mut StreamReader>) -> Collected<'_> {
    Box::pin(async move {
        match reader {
            Some(reader) => reader.read_until_eof().await.map(Some),
            None => Ok(None),
        }
    })
}

impl std::fmt::Debug for Process {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Process")
            .field("pid", &self.pid())
            .field("returncode", &self.returncode())
            .finish()
    }
}
