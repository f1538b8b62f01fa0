//! The node's log lines on stderr: one event is one line, whatever the
//! values in it hold.
//!
//! Log lines carry what requests and peers sent (a field name, a peer's
//! refusal reason, an address). A raw line break in one would start a line
//! of the sender's choosing, and an escape sequence would reach the
//! administrator's terminal; tracing-subscriber escapes neither a line
//! break nor, in its JSON format, DEL, C1 controls or text direction
//! characters. So every formatted event passes through [`Escaping`] before
//! it is written: each character a one-line field refuses
//! (`protocol::validate::refused_in_line`) becomes an escape — `\n`,
//! `\u{1b}` in the text format, `\u001b` in the JSON format (where it is
//! the same JSON string). Only the event's own final line break stays.
//!
//! A log line that cannot be written is dropped and counted
//! ([`dropped_lines`]), never an error: stderr on a full disk or on a pipe
//! whose reader has gone must not take the node down. (tracing-subscriber
//! reports a writer's error with `eprintln!`, which panics when stderr
//! fails; the panic hook logs the panic, which fails again, and the process
//! aborted.)

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use tracing_subscriber::fmt::MakeWriter;
use yui_protocol::validate::refused_in_line;

/// Escapes one formatted event (see the module doc); `json` when it is a
/// JSON object, so the escapes are JSON's own.
pub fn escape_event(event: &str, json: bool) -> Cow<'_, str> {
    let (body, end) = match event.strip_suffix('\n') {
        Some(body) => (body, "\n"),
        None => (event, ""),
    };
    if !body.chars().any(refused_in_line) {
        return Cow::Borrowed(event);
    }
    let mut out = String::with_capacity(event.len() + 16);
    for c in body.chars() {
        if !refused_in_line(c) {
            out.push(c);
        } else if json {
            // Every character refused_in_line names is in the BMP.
            let _ = write!(out, "\\u{:04x}", u32::from(c));
        } else {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                _ => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
            }
        }
    }
    out.push_str(end);
    Cow::Owned(out)
}

static DROPPED: AtomicU64 = AtomicU64::new(0);

/// How many log lines could not be written (and were dropped) since the
/// process started.
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Standard error, with every event escaped (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct Escaping {
    json: bool,
}

impl Escaping {
    pub fn text() -> Escaping {
        Escaping { json: false }
    }

    pub fn json() -> Escaping {
        Escaping { json: true }
    }
}

impl<'a> MakeWriter<'a> for Escaping {
    type Writer = Escaping;

    fn make_writer(&'a self) -> Escaping {
        *self
    }
}

impl Write for Escaping {
    /// tracing-subscriber formats an event into one buffer and writes it
    /// with one `write_all`; consuming the buffer whole keeps it so. A line
    /// that cannot be written is dropped and counted, never an error (see
    /// the module doc).
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        if io::stderr()
            .lock()
            .write_all(escape_event(&text, self.json).as_bytes())
            .is_err()
        {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Standard error is unbuffered; a failure here is one already
        // counted by `write`.
        let _ = io::stderr().flush();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_stays_one_line() {
        let forged = "INFO refused field=ti\ntle\u{1b}[31m \u{202e}x\u{9b}\n";
        assert_eq!(
            escape_event(forged, false),
            "INFO refused field=ti\\ntle\\u{1b}[31m \\u{202e}x\\u{9b}\n"
        );
        let json = "{\"f\":\"a\\nb\u{9b}\u{202e}\u{7f}\"}\n";
        let escaped = escape_event(json, true);
        assert_eq!(escaped, "{\"f\":\"a\\nb\\u009b\\u202e\\u007f\"}\n");
        let value: serde_json::Value = serde_json::from_str(&escaped).expect("still JSON");
        assert_eq!(value["f"], "a\nb\u{9b}\u{202e}\u{7f}", "the same string");
        assert!(matches!(
            escape_event("plain 日本語\n", false),
            Cow::Borrowed(_)
        ));
    }
}
