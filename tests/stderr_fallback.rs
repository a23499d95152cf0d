//! With no `tracing` subscriber installed, the default exception handler
//! writes to standard error (as Python's unconfigured logging does), so a
//! program that merely links evloop does not lose its errors. Checked in a
//! child process, whose standard error the test reads.

use evloop::EventLoop;
use std::process::Command;

const CHILD: &str = "EVLOOP_STDERR_FALLBACK_CHILD";

#[test]
fn the_default_handler_prints_to_stderr_without_a_subscriber() {
    if std::env::var_os(CHILD).is_some() {
        // In the child: a panicking callback, reported by the default
        // handler, with no subscriber anywhere.
        let lp = EventLoop::new().unwrap();
        lp.call_soon(|| panic!("nobody is listening")).unwrap();
        lp.stop();
        lp.run_forever().unwrap();
        return;
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "the_default_handler_prints_to_stderr_without_a_subscriber",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("evloop: Exception in callback <Handle scheduled at"),
        "{stderr}"
    );
    assert!(stderr.contains("panic: nobody is listening"), "{stderr}");
}
