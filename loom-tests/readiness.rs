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

/// `poll_op`'s retry loop and its hang-up branch: the peer hangs up its
/// writing side's signal (READ_CLOSED, a final bit the `WouldBlock` does
/// not clear) while the read still would block, then a byte lands with a
/// new edge. The reader, which registered its waker after it saw only the
/// final bit, must check again and read the byte (a registration after
/// the last check used to miss that edge).
#[test]
fn poll_op_after_a_hang_up_still_sees_the_next_edge() {
    loom::model(|| {
        let io = Arc::new(Readiness::default());
        let data = Arc::new(AtomicUsize::new(0));
        let (i, d) = (io.clone(), data.clone());
        let peer = thread::spawn(move || {
            i.report_read_closed();
            d.fetch_add(1, Ordering::SeqCst);
            i.report_readable();
        });
        loom::future::block_on(async {
            let n = std::future::poll_fn(|cx| {
                io.poll_read_op(cx, 8, || match data.swap(0, Ordering::SeqCst) {
                    0 => Err(std::io::ErrorKind::WouldBlock.into()),
                    n => Ok(n),
                })
            })
            .await
            .unwrap();
            assert_eq!(n, 1);
        });
        peer.join().unwrap();
    });
}

/// `clear_spent`: a read shorter than its buffer clears the readiness it
/// was attempted on, unless an edge came after that observation. Two
/// bytes, each with its edge; every one is read, none waits for ever.
#[test]
fn a_short_read_clears_only_the_readiness_it_saw() {
    loom::model(|| {
        let io = Arc::new(Readiness::default());
        let data = Arc::new(AtomicUsize::new(0));
        let (i, d) = (io.clone(), data.clone());
        let peer = thread::spawn(move || {
            for _ in 0..2 {
                d.fetch_add(1, Ordering::SeqCst);
                i.report_readable();
            }
        });
        loom::future::block_on(async {
            let mut read = 0;
            while read < 2 {
                read += std::future::poll_fn(|cx| {
                    io.poll_read_op(cx, 8, || match data.swap(0, Ordering::SeqCst) {
                        0 => Err(std::io::ErrorKind::WouldBlock.into()),
                        n => Ok(n),
                    })
                })
                .await
                .unwrap();
            }
        });
        peer.join().unwrap();
    });
}

/// Readers waiting together (`poll_ready_shared`'s waiter list and its
/// count, read by the loop after a fence): an edge wakes every waiter
/// registered before it, and a waiter registering as the edge lands sees
/// the readiness itself. Both readers finish.
#[test]
fn every_shared_waiter_sees_the_edge() {
    loom::model(|| {
        let io = Arc::new(Readiness::default());
        let i = io.clone();
        let peer = thread::spawn(move || i.report_readable());
        let other = {
            let io = io.clone();
            thread::spawn(move || {
                loom::future::block_on(async {
                    let mut id = None;
                    std::future::poll_fn(|cx| io.poll_readable_shared(cx, &mut id)).await;
                    io.forget_shared(&mut id);
                })
            })
        };
        loom::future::block_on(async {
            let mut id = None;
            std::future::poll_fn(|cx| io.poll_readable_shared(cx, &mut id)).await;
            io.forget_shared(&mut id);
        });
        peer.join().unwrap();
        other.join().unwrap();
    });
}

/// A registration dropped on another thread frees its slot through a
/// post to the loop, while the loop looks up an event for it and
/// registers a new source that may reuse the slot: the old token never
/// reaches the new registration (the generation differs).
#[test]
fn a_stale_token_never_reaches_the_slots_next_registration() {
    use evloop::loom_api::{Driver, MockLoop};
    loom::model(|| {
        let lp = MockLoop::default();
        let driver = lp.driver();
        let old = driver.register_socket();
        let old_token = old.token();
        let old_addr = Driver::address_of(&old);
        let dropper = thread::spawn(move || drop(old));
        // An event for the old source, looked up while it may be going.
        let seen = driver.lookup(old_token);
        assert!(seen.is_none() || seen == Some(old_addr));
        driver.run_queued();
        let new = driver.register_socket();
        let new_addr = Driver::address_of(&new);
        let seen = driver.lookup(old_token);
        assert!(seen.is_none() || seen == Some(old_addr));
        assert_ne!(seen, Some(new_addr));
        dropper.join().unwrap();
        driver.run_queued();
        assert_eq!(driver.lookup(old_token), None);
        assert_eq!(driver.lookup(new.token()), Some(new_addr));
        drop(new);
        driver.run_queued();
        driver.close();
    });
}
