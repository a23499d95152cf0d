//! SIGINT and SIGTERM stop a server gracefully: the handlers (ordinary
//! callbacks on the loop's thread) stop the loop; the server then closes,
//! its clients are told, and the loop closes.
//!
//! ```text
//! cargo run --example signals         # serves on 127.0.0.1:8890; Ctrl-C stops it
//! ```
//!
//! `--self-test` sends itself SIGTERM once serving, and checks the
//! shutdown went through.

use evloop::EventLoop;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let self_test = std::env::args().any(|a| a == "--self-test");
    let lp = EventLoop::new()?;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        let stopper = lp.clone();
        lp.add_signal_handler(sig, move || {
            let name = signal_hook::low_level::signal_name(sig).unwrap_or("?");
            println!("got {name}: stopping");
            stopper.stop();
        })?;
    }
    let server = lp.run_until_complete(lp.start_server(
        |mut reader, writer| async move {
            while let Ok(line) = reader.readline().await {
                if line.is_empty() || writer.write(&line).is_err() {
                    break;
                }
            }
            writer.close();
        },
        Some("127.0.0.1"),
        if self_test { 0 } else { 8890 },
    ))??;
    for a in server.sockets() {
        println!("serving on {:?} (Ctrl-C or SIGTERM stops)", a.as_socket());
    }
    if self_test {
        // Delivered to the loop once it runs.
        signal_hook::low_level::raise(libc::SIGTERM)?;
    }
    lp.run_forever()?;
    // Graceful: stop accepting, tell the clients, wait for them.
    server.close();
    server.close_clients();
    lp.run_until_complete(server.wait_closed())?;
    for sig in [libc::SIGINT, libc::SIGTERM] {
        lp.remove_signal_handler(sig)?;
    }
    lp.close()?;
    println!("closed cleanly");
    Ok(())
}
