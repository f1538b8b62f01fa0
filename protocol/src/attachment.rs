//! Attachments: files named by a record's document (protocol.md 5.4). The
//! document holds, under the root key `attachments`, a map from each
//! file's SHA-256 (64 lower-case hex digits) to its name, size and content
//! type, so the reference travels as a signed change like any edit and
//! authenticates the bytes, which travel separately (`GET
//! /yui/v1/attachments/{sha256}`) and are checked against the hash.
//!
//! This module holds the rules every node applies, without I/O: which
//! content types are allowed, what a file's first bytes must look like for
//! its declared type ([`sniff`]), what a name may be, and the checks a
//! received document's entries pass ([`check_entry`]).

use serde::{Deserialize, Serialize};

/// The largest file any node accepts or sends (a node's own limit,
/// `[attachments] max_file_bytes`, is at most this).
pub const MAX_FILE_BYTES: u64 = 1 << 30;
/// Files one record may name.
pub const MAX_PER_RECORD: usize = 100;
/// The longest name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// One file a record names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    /// SHA-256 of the bytes, 64 lower-case hex digits.
    pub sha256: String,
    /// The file name shown and offered on download.
    pub name: String,
    /// Bytes.
    pub size: u64,
    /// One of [`ALLOWED_TYPES`].
    pub content_type: String,
    /// The town that attached it.
    pub town: String,
    /// When it was attached (RFC 3339, UTC).
    pub added_at: String,
}

/// The content types a file may have, with how its bytes must begin
/// (empty: no check is cheap, e.g. plain text).
pub const ALLOWED_TYPES: [(&str, &[&[u8]]); 12] = [
    ("application/pdf", &[b"%PDF-"]),
    ("image/png", &[b"\x89PNG\r\n\x1a\n"]),
    ("image/jpeg", &[b"\xff\xd8\xff"]),
    ("image/gif", &[b"GIF87a", b"GIF89a"]),
    ("image/webp", &[b"RIFF"]),
    // Office Open XML files are zip archives.
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        &[b"PK\x03\x04"],
    ),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        &[b"PK\x03\x04"],
    ),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        &[b"PK\x03\x04"],
    ),
    // The older binary Office formats are OLE compound files.
    ("application/msword", &[b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"]),
    (
        "application/vnd.ms-excel",
        &[b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"],
    ),
    ("text/plain", &[]),
    ("text/csv", &[]),
];

/// Whether a content type is allowed, and shown inline (images only; a
/// PDF or a text is downloaded, never rendered by the node's origin).
pub fn is_allowed(content_type: &str) -> bool {
    ALLOWED_TYPES.iter().any(|(t, _)| *t == content_type)
}

/// Image types a browser may show inline from the node (`<img>`).
pub fn is_image(content_type: &str) -> bool {
    matches!(
        content_type,
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    )
}

/// Why a file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileRefused {
    #[error(
        "files of type {0:?} cannot be attached; allowed: PDF, PNG, JPEG, GIF, WebP, Word, Excel, PowerPoint, plain text and CSV"
    )]
    TypeNotAllowed(String),
    #[error("the file does not look like {0} (its first bytes say otherwise)")]
    ContentMismatch(&'static str),
    #[error("{0}")]
    BadName(String),
}

/// The content type to store for a file declared as `declared` (parameters
/// such as `; charset=utf-8` dropped, lower case) whose bytes begin with
/// `head`: refused when the type is not allowed or the bytes do not match.
/// Text must be UTF-8 without NUL bytes.
pub fn sniff(declared: &str, head: &[u8]) -> Result<&'static str, FileRefused> {
    let base = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((name, magics)) = ALLOWED_TYPES.iter().find(|(t, _)| *t == base) else {
        return Err(FileRefused::TypeNotAllowed(base.chars().take(80).collect()));
    };
    let matches = if magics.is_empty() {
        // Text: no NUL byte and valid UTF-8 (a cut multi-byte character at
        // the end of the head is fine).
        !head.contains(&0)
            && match std::str::from_utf8(head) {
                Ok(_) => true,
                Err(e) => e.error_len().is_none(),
            }
    } else {
        magics.iter().any(|m| head.starts_with(m))
            && (*name != "image/webp" || head.get(8..12) == Some(b"WEBP"))
    };
    if matches {
        Ok(name)
    } else {
        Err(FileRefused::ContentMismatch(name))
    }
}

/// A file name as stored: trimmed, without a path, control characters or
/// quotes; 1 to [`MAX_NAME_CHARS`] characters.
pub fn clean_name(name: &str) -> Result<String, FileRefused> {
    // The name as given is held to the limit too, path and all.
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(FileRefused::BadName(format!(
            "the file name is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    let last = name.rsplit(['/', '\\']).next().unwrap_or("");
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\u{2028}' | '\u{2029}'))
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "." || cleaned == ".." {
        return Err(FileRefused::BadName(
            "the file needs a name (?name=報告書.pdf)".into(),
        ));
    }
    if cleaned.chars().count() > MAX_NAME_CHARS {
        return Err(FileRefused::BadName(format!(
            "the file name is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    Ok(cleaned.to_owned())
}

/// Whether `text` is a SHA-256 as the document names it.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The checks a received document's entry passes (the gate): the key is the
/// entry's hash, the name is as [`clean_name`] leaves it, the size within
/// [`MAX_FILE_BYTES`], the type allowed.
pub fn check_entry(key: &str, a: &Attachment) -> Result<(), String> {
    if !is_sha256(key) || a.sha256 != key {
        return Err("an attachment's key is not its SHA-256".into());
    }
    if clean_name(&a.name).ok().as_deref() != Some(a.name.as_str()) {
        return Err(format!(
            "attachment {}: not a file name",
            &key[..12.min(key.len())]
        ));
    }
    if a.size == 0 || a.size > MAX_FILE_BYTES {
        return Err(format!(
            "attachment {}: size {} is outside 1 .. {MAX_FILE_BYTES}",
            &key[..12],
            a.size
        ));
    }
    if !is_allowed(&a.content_type) {
        return Err(format!(
            "attachment {}: type {:?} is not allowed",
            &key[..12],
            a.content_type.chars().take(80).collect::<String>()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_is_taken_by_its_bytes_not_only_its_declared_type() {
        assert_eq!(
            sniff("application/pdf", b"%PDF-1.7\n"),
            Ok("application/pdf")
        );
        assert_eq!(
            sniff("IMAGE/PNG; x=1", b"\x89PNG\r\n\x1a\n...."),
            Ok("image/png")
        );
        assert_eq!(
            sniff("image/png", b"<svg onload=alert(1)>"),
            Err(FileRefused::ContentMismatch("image/png"))
        );
        assert!(matches!(
            sniff("image/svg+xml", b"<svg/>"),
            Err(FileRefused::TypeNotAllowed(_))
        ));
        assert!(matches!(
            sniff("text/html", b"<html>"),
            Err(FileRefused::TypeNotAllowed(_))
        ));
        assert_eq!(sniff("text/csv", "名前,数\n".as_bytes()), Ok("text/csv"));
        assert!(sniff("text/plain", b"a\0b").is_err());
        assert!(sniff("image/webp", b"RIFF\0\0\0\0WAVE").is_err());
        assert!(sniff("image/webp", b"RIFF\0\0\0\0WEBPVP8 ").is_ok());
    }

    #[test]
    fn names_lose_their_path_and_control_characters() {
        assert_eq!(
            clean_name("C:\\Users\\x\\報告書.pdf").unwrap(),
            "報告書.pdf"
        );
        assert_eq!(clean_name("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(clean_name("a\"b\r\n.pdf").unwrap(), "ab.pdf");
        assert!(clean_name("  ").is_err());
        assert!(clean_name("..").is_err());
        assert!(clean_name(&"長".repeat(201)).is_err());
    }

    #[test]
    fn a_received_entry_is_checked() {
        let sha = "a".repeat(64);
        let mut a = Attachment {
            sha256: sha.clone(),
            name: "x.pdf".into(),
            size: 10,
            content_type: "application/pdf".into(),
            town: "tateshina".into(),
            added_at: "2026-01-01T00:00:00.000Z".into(),
        };
        assert_eq!(check_entry(&sha, &a), Ok(()));
        assert!(check_entry(&"b".repeat(64), &a).is_err());
        a.content_type = "text/html".into();
        assert!(check_entry(&sha, &a).is_err());
        a.content_type = "application/pdf".into();
        a.name = "../x".into();
        assert!(check_entry(&sha, &a).is_err());
    }
}
