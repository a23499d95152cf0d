//! asyncio's "Display the current date with call_later()": a callback that
//! prints the date and re-schedules itself every second for five seconds.

use evloop::EventLoop;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `YYYY-MM-DD HH:MM:SS` (UTC) without a date crate.
fn now_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil-from-days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

fn display_date(end: Instant, lp: EventLoop) {
    println!("{}", now_utc());
    if lp.time() + Duration::from_secs(1) < end {
        let next = lp.clone();
        lp.call_later(Duration::from_secs(1), move || display_date(end, next))
            .expect("the loop is open");
    } else {
        lp.stop();
    }
}

fn main() -> Result<(), evloop::Error> {
    let lp = EventLoop::new()?;
    // Schedule the first call to display_date().
    let end = lp.time() + Duration::from_secs(5);
    let first = lp.clone();
    lp.call_soon(move || display_date(end, first))?;
    // Blocking call interrupted by lp.stop().
    lp.run_forever()?;
    lp.close()
}
