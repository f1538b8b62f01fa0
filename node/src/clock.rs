//! The node's one clock: milliseconds since the epoch, read from the system
//! here, and the injectable form that lets tests move time.

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
