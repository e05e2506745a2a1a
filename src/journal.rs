//! Logging straight to the systemd journal when stderr is the journal: every event's fields become
//! journal fields (`RUN`, `NODE`, `PHASE`, `TOKEN`, …), so `journalctl -u swarm-upgrade RUN=<id>`
//! selects one run, while `MESSAGE` keeps the text line (`phase entered run=… node=…`) that
//! `journalctl` shows by default.
//!
//! Hand-written rather than `tracing-journald` (0.3.2): that crate writes only the event's
//! `message` field as `MESSAGE` (`phase entered`) and has no way to make it the whole line, so
//! `journalctl -u …` would show the line without its fields, and the lab's checks on
//! `journalctl -o cat` (`phase entered node=…`, `agent listening node=…`) would fail. With its
//! field prefix off (needed for `RUN=`, not `F_RUN=`), an event field named like one of its own
//! (`target`, `priority`) writes a second one, where this layer sends `FIELD_TARGET`. What the crate does better, an entry too large for one
//! datagram sent through a memfd, this layer does by writing the line to stderr instead.

use std::os::unix::net::UnixDatagram;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::Context;

/// journald's socket for the native protocol.
const SOCKET: &str = "/run/systemd/journal/socket";

/// Fields the layer sets itself; an event field of the same name is sent as `FIELD_<NAME>`.
const RESERVED: &[&str] = &["MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "TARGET"];

/// A tracing layer that sends each event to journald.
pub struct JournalLayer {
    socket: UnixDatagram,
}

impl JournalLayer {
    /// The layer, when systemd connected stderr to the journal (`JOURNAL_STREAM` names stderr's
    /// device and inode) and its socket is there; `None` otherwise.
    pub fn for_stderr() -> Option<JournalLayer> {
        use std::os::unix::fs::MetadataExt;
        let stream = std::env::var("JOURNAL_STREAM").ok()?;
        let stderr = std::fs::metadata("/proc/self/fd/2").ok()?;
        if stream != format!("{}:{}", stderr.dev(), stderr.ino()) {
            return None;
        }
        let socket = UnixDatagram::unbound().ok()?;
        socket.connect(SOCKET).ok()?;
        Some(JournalLayer { socket })
    }
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for JournalLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let meta = event.metadata();
        let entry = entry(meta.level(), meta.target(), &fields.message, &fields.pairs);
        if self.socket.send(&entry).is_err() {
            // Too large for a datagram, or journald is gone: the line still reaches stderr.
            eprintln!("{}", text(&fields.message, &fields.pairs));
        }
    }
}

/// An event's message and its other fields, values as `fmt` shows them.
#[derive(Default)]
struct Fields {
    message: String,
    pairs: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, format!("{value:?}"));
    }
}

impl Fields {
    fn put(&mut self, field: &Field, value: String) {
        if field.name() == "message" {
            self.message = value;
        } else {
            self.pairs.push((field.name().to_string(), value));
        }
    }
}

/// The text line: the message, then `key=value` for each field, as the stderr format has them.
fn text(message: &str, pairs: &[(String, String)]) -> String {
    let mut line = message.to_string();
    for (k, v) in pairs {
        line.push_str(&format!(" {k}={v}"));
    }
    line
}

/// syslog priority of a level.
fn priority(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        _ => 7,
    }
}

/// A journal field name for `name`: upper case, `[A-Z0-9_]`, not starting with `_` or a digit,
/// at most 64 bytes, and never one of the layer's own.
fn field_name(name: &str) -> String {
    let mut n: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' })
        .collect::<String>();
    n = n.trim_start_matches(|c: char| c == '_' || c.is_ascii_digit()).to_string();
    if n.is_empty() || RESERVED.contains(&n.as_str()) {
        n = format!("FIELD_{n}");
    }
    n.truncate(64);
    n
}

/// One journal entry in the native protocol: `KEY=value` lines, and the length-prefixed binary
/// form for values holding a newline.
pub fn entry(level: &Level, target: &str, message: &str, pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut put = |key: &str, value: &str| {
        out.extend_from_slice(key.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
            out.extend_from_slice(value.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'\n');
    };
    put("MESSAGE", &text(message, pairs));
    put("PRIORITY", &priority(level).to_string());
    put("SYSLOG_IDENTIFIER", "swarm-upgrade");
    put("TARGET", target);
    for (k, v) in pairs {
        put(&field_name(k), v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn an_event_becomes_its_text_line_and_one_field_per_key() {
        let e = entry(
            &Level::INFO,
            "swarm_upgrade::coordinator::drive",
            "phase entered",
            &pairs(&[
                ("run", "20261125T1-m1-7"),
                ("node", "worker1"),
                ("phase", "Drain"),
                ("token", "3"),
            ]),
        );
        let text = String::from_utf8(e).unwrap();
        assert_eq!(
            text,
            "MESSAGE=phase entered run=20261125T1-m1-7 node=worker1 phase=Drain token=3\nPRIORITY=6\n\
             SYSLOG_IDENTIFIER=swarm-upgrade\nTARGET=swarm_upgrade::coordinator::drive\n\
             RUN=20261125T1-m1-7\nNODE=worker1\nPHASE=Drain\nTOKEN=3\n"
        );
    }

    #[test]
    fn a_value_with_a_newline_is_length_prefixed() {
        let e = entry(&Level::ERROR, "t", "failed", &pairs(&[("reason", "a\nb")]));
        let tail = b"REASON\n\x03\0\0\0\0\0\0\0a\nb\n";
        assert!(e.ends_with(tail), "{e:?}");
        assert!(e.starts_with(b"MESSAGE\n"), "the message holds the newline too");
        assert!(String::from_utf8_lossy(&e).contains("PRIORITY=3\n"));
    }

    #[test]
    fn field_names_are_what_journald_accepts_and_never_the_layers_own() {
        assert_eq!(field_name("node"), "NODE");
        assert_eq!(field_name("new_id"), "NEW_ID");
        assert_eq!(field_name("_hidden"), "HIDDEN");
        assert_eq!(field_name("message"), "FIELD_MESSAGE");
        assert_eq!(field_name("priority"), "FIELD_PRIORITY");
        assert_eq!(field_name("r#type"), "R_TYPE");
        assert_eq!(field_name(&"x".repeat(80)).len(), 64);
    }
}
