//! asyncio's "Hello World" with call_soon(): schedule a callback, which
//! prints and stops the loop.

use evloop::EventLoop;

fn main() -> Result<(), evloop::Error> {
    let lp = EventLoop::new()?;
    let stopper = lp.clone();
    lp.call_soon(move || {
        println!("Hello World");
        stopper.stop();
    })?;
    // Blocks until stop() is called.
    lp.run_forever()?;
    lp.close()
}
