//! EVLOOP_DEBUG switches debug mode on for new loops (its own test binary:
//! it changes the process environment).

#[test]
fn the_environment_variable_switches_debug_mode_on() {
    assert!(!evloop::EventLoop::new().unwrap().get_debug());
    // Safety: this binary has a single test, so no other thread reads the
    // environment concurrently.
    unsafe { std::env::set_var(evloop::DEBUG_ENV, "1") };
    assert!(evloop::EventLoop::new().unwrap().get_debug());
    unsafe { std::env::set_var(evloop::DEBUG_ENV, "0") };
    assert!(!evloop::EventLoop::new().unwrap().get_debug());
    unsafe { std::env::remove_var(evloop::DEBUG_ENV) };
}
