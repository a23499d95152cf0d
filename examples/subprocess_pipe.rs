//! Running commands on the loop: stream a child's output line by line,
//! feed another its input and read its answer and exit code, and watch a
//! third through a `SubprocessProtocol`.
//!
//! ```text
//! cargo run --example subprocess_pipe
//! ```

use evloop::{EventLoop, Stdio, SubprocessOptions, SubprocessProtocol, SubprocessTransport};

/// Counts what a child writes on each pipe.
#[derive(Default)]
struct Counter {
    bytes: [usize; 3],
}

impl SubprocessProtocol for Counter {
    fn connection_made(&mut self, transport: SubprocessTransport) {
        println!("[protocol] child {} started", transport.get_pid());
    }
    fn pipe_data_received(&mut self, fd: i32, data: &[u8]) {
        self.bytes[fd as usize] += data.len();
    }
    fn process_exited(&mut self) {
        println!(
            "[protocol] exited; {} bytes on stdout, {} on stderr",
            self.bytes[1], self.bytes[2]
        );
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let lp = EventLoop::new()?;
    lp.run_until_complete(async {
        // 1. Stream the output of a command as it comes.
        let options = SubprocessOptions {
            stdout: Some(Stdio::Pipe),
            ..Default::default()
        };
        let mut child = lp
            .create_subprocess_shell("for i in 1 2 3; do echo tick $i; done", options)
            .await?;
        let stdout = child.stdout.as_mut().expect("stdout is a pipe");
        loop {
            let line = stdout.readline().await?;
            if line.is_empty() {
                break;
            }
            print!("[stream] {}", String::from_utf8_lossy(&line));
        }
        println!("[stream] exit code {}", child.wait().await?);

        // 2. Send input, read the answer and the exit code.
        let options = SubprocessOptions {
            stdin: Some(Stdio::Pipe),
            stdout: Some(Stdio::Pipe),
            ..Default::default()
        };
        let mut sort = lp.create_subprocess_exec("sort", ["-r"], options).await?;
        let (out, _) = sort.communicate(Some(b"banana\napple\ncherry\n")).await?;
        print!(
            "[sort -r]\n{}",
            String::from_utf8_lossy(&out.unwrap_or_default())
        );
        println!("[sort -r] exit code {:?}", sort.returncode());

        // 3. A child killed by a signal has a negative return code.
        let sleeper = lp
            .create_subprocess_exec("sleep", ["60"], SubprocessOptions::default())
            .await?;
        sleeper.terminate()?;
        println!("[sleep] return code {} (SIGTERM)", sleeper.wait().await?);

        // 4. The protocol layer, as asyncio's loop.subprocess_exec.
        let transport = lp
            .subprocess_exec(
                Counter::default,
                "sh",
                ["-c", "seq 1 1000; echo done >&2"],
                SubprocessOptions::default(),
            )
            .await?;
        println!("[protocol] return code {}", transport.wait().await?);
        Ok::<_, evloop::Error>(())
    })??;
    lp.close()?;
    Ok(())
}
