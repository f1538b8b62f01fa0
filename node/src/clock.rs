//! The node's one clock: milliseconds since the epoch, read from the system
//! here, the injectable form that lets tests move time, and today's date in
//! Japan, where the consortium's days and fiscal years turn.

use std::sync::Arc;

pub use yui_protocol::Millis;

/// Milliseconds since the epoch, now. The node's one clock.
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Milliseconds since the epoch. Injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock, as a [`Clock`].
pub fn system_clock() -> Clock {
    Arc::new(now_ms)
}

/// Today's date in Japan (`YYYY-MM-DD`): every town of the consortium is
/// there, and its fiscal years turn at midnight JST, not UTC.
pub fn today_jst() -> String {
    day_jst(now_ms())
}

/// The date in Japan (`YYYY-MM-DD`) at `ms` since the epoch.
pub fn day_jst(ms: Millis) -> String {
    let Ok(at) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return String::new();
    };
    at.to_offset(time::macros::offset!(+9))
        .date()
        .format(time::macros::format_description!("[year]-[month]-[day]"))
        .unwrap_or_default()
}
