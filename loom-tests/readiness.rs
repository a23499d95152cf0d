//! loom model of the readiness layer's word (src/readiness.rs,
//! `ScheduledIo`): the loop reports edges with a new tick and wakes the
//! reader; the reader checks, registers and checks again, and clears
//! readiness after `WouldBlock` only if no edge arrived since it looked.
//! Data that arrives is always read: no readiness is lost.
#![cfg(loom)]

use evloop::loom_api::Readiness;
use loom::sync::Arc;
use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::thread;

#[test]
fn every_edge_is_read_and_no_readiness_is_lost() {
    loom::model(|| {
        let io = Arc::new(Readiness::default());
        // Bytes in the socket's buffer.
        let data = Arc::new(AtomicUsize::new(0));
        let (i, d) = (io.clone(), data.clone());
        let peer = thread::spawn(move || {
            for _ in 0..2 {
                // A byte lands, then epoll reports the edge.
                d.fetch_add(1, Ordering::SeqCst);
                i.report_readable();
            }
        });
        // The reader is a future on loom's executor: a lost wake-up
        // leaves it waiting forever, which loom reports as a deadlock.
        loom::future::block_on(async {
            let mut read = 0;
            while read < 2 {
                let ev = std::future::poll_fn(|cx| match io.poll_readable(cx.waker()) {
                    Some(ev) => std::task::Poll::Ready(ev),
                    None => std::task::Poll::Pending,
                })
                .await;
                match data.swap(0, Ordering::SeqCst) {
                    0 => io.clear_readable(ev), // WouldBlock
                    n => read += n,
                }
            }
        });
        peer.join().unwrap();
    });
}
