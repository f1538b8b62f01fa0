//! Record identity and the record shape of the API (SPEC §8).
//!
//! A record id is 26 lowercase Crockford base32 characters: 48 bits of
//! creation time in milliseconds then 80 random bits, so ids sort by creation
//! time and two towns never pick the same one. Time and randomness are passed
//! in: this crate reads no clock.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::collection::Collection;

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

const CROCKFORD: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ID_LEN: usize = 26;

/// A record's stable id.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RecordId(String);

impl RecordId {
    /// A new id from the creation time and 10 random bytes.
    pub fn generate(now: Millis, random: [u8; 10]) -> RecordId {
        let time = (now.max(0) as u128) & ((1u128 << 48) - 1);
        let mut rand = 0u128;
        for b in random {
            rand = (rand << 8) | u128::from(b);
        }
        RecordId::from_u128((time << 80) | rand)
    }

    /// A new id that sorts after `previous`: ids made by one node then sort
    /// in the order they were made, even within one millisecond.
    pub fn generate_after(now: Millis, random: [u8; 10], previous: Option<&RecordId>) -> RecordId {
        let id = RecordId::generate(now, random);
        match previous {
            Some(prev) if id <= *prev => prev.successor(),
            _ => id,
        }
    }

    fn to_u128(&self) -> u128 {
        self.0.bytes().fold(0u128, |n, b| {
            let digit = CROCKFORD.iter().position(|&c| c == b).unwrap_or(0) as u128;
            (n << 5) | digit
        })
    }

    fn from_u128(mut n: u128) -> RecordId {
        let mut out = [0u8; ID_LEN];
        for slot in out.iter_mut().rev() {
            *slot = CROCKFORD[(n & 31) as usize];
            n >>= 5;
        }
        RecordId(out.iter().map(|&b| b as char).collect())
    }

    /// The next id in sort order (wrapping only after 2^128 ids).
    fn successor(&self) -> RecordId {
        RecordId::from_u128(self.to_u128().wrapping_add(1))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The text is not a record id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a record id (26 characters of 0-9 and a-z without i, l, o, u)")]
pub struct InvalidRecordId(pub String);

impl FromStr for RecordId {
    type Err = InvalidRecordId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The first character carries only 3 bits of a 128-bit number.
        let ok = s.len() == ID_LEN
            && s.bytes().all(|b| CROCKFORD.contains(&b))
            && s.as_bytes()[0] <= b'7';
        if ok {
            Ok(RecordId(s.to_owned()))
        } else {
            Err(InvalidRecordId(s.to_owned()))
        }
    }
}

impl TryFrom<String> for RecordId {
    type Error = InvalidRecordId;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RecordId> for String {
    fn from(id: RecordId) -> String {
        id.0
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({})", self.0)
    }
}

/// A town id: lowercase ASCII letters, digits and `-`, 1–32 characters,
/// starting with a letter (`tateshina`, `omachi`).
pub fn check_town_id(town: &str) -> Result<(), String> {
    let ok = (1..=32).contains(&town.len())
        && town.as_bytes()[0].is_ascii_lowercase()
        && town
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "town id {town:?} must be 1-32 lowercase ASCII letters, digits or '-', starting with a letter (e.g. tateshina)"
        ))
    }
}

/// RFC 3339 text of a millisecond timestamp (`2025-04-01T09:30:00.120Z`),
/// always with three fractional digits, so that times sort as text.
pub fn format_time(ms: Millis) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&format).unwrap_or_default()
}

/// Checks a node id as an administrator may type it (protocol.md 2.2: 52
/// base32 characters of a SHA-256, in groups of four joined by `-`); case,
/// dashes and spaces are forgiven. Returns the canonical spelling.
pub fn parse_node_id(text: &str) -> Result<String, String> {
    let bare: String = text
        .chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let shown: String = text.chars().take(80).collect();
    let valid = bare.len() == 52
        && bare.bytes().all(|b| matches!(b, b'A'..=b'Z' | b'2'..=b'7'))
        // 256 bits fill 51 characters and one bit of the last: its other
        // four bits are zero.
        && bare.ends_with(['A', 'Q']);
    if !valid {
        return Err(format!(
            "{shown:?} is not a node id: 52 characters of A-Z and 2-7 in groups of four, like 3ZHN-S7N4-…-5FVQ (`yui status` on the peer shows it)"
        ));
    }
    Ok(bare
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-"))
}

/// A record as the API shows it (SPEC §8).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordView {
    pub id: RecordId,
    pub collection: String,
    pub town: String,
    pub created_at: String,
    pub updated_at: String,
    pub deleted: bool,
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The files the record names (protocol.md 5.4), by name; absent when
    /// none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::attachment::Attachment>,
}

impl RecordView {
    pub fn collection(&self) -> Option<Collection> {
        self.collection.parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_parse_back() {
        let a = RecordId::generate(1_700_000_000_000, [0xff; 10]);
        let b = RecordId::generate(1_700_000_000_001, [0; 10]);
        assert!(a < b);
        assert_eq!(a.as_str().len(), 26);
        assert_eq!(a.as_str().parse::<RecordId>(), Ok(a.clone()));
        assert!("not-an-id".parse::<RecordId>().is_err());
        assert!("8zzzzzzzzzzzzzzzzzzzzzzzzz".parse::<RecordId>().is_err());
        assert!("0123456789abcdefghjkmnpqri".parse::<RecordId>().is_err());
    }

    #[test]
    fn ids_made_in_one_millisecond_still_sort_in_order() {
        let first = RecordId::generate_after(5, [0xff; 10], None);
        let second = RecordId::generate_after(5, [0; 10], Some(&first));
        assert!(second > first);
        assert_eq!(second.as_str().parse::<RecordId>(), Ok(second.clone()));
        let later = RecordId::generate_after(7, [0; 10], Some(&second));
        assert_eq!(later, RecordId::generate(7, [0; 10]));
    }

    #[test]
    fn town_ids() {
        assert!(check_town_id("tateshina").is_ok());
        assert!(check_town_id("itoigawa-2").is_ok());
        assert!(check_town_id("Tateshina").is_err());
        assert!(check_town_id("").is_err());
        assert!(check_town_id("2town").is_err());
        assert!(check_town_id("立科").is_err());
    }

    #[test]
    fn node_ids_are_checked_and_spelled_one_way() {
        let id = "3ZHN-S7N4-TC7J-KC57-AQAX-GWIK-GMZ5-ZO6D-V56R-QC2H-TH2Q-JHP4-5FVQ";
        assert_eq!(parse_node_id(id).as_deref(), Ok(id));
        let typed = id.replace('-', "").to_lowercase();
        assert_eq!(parse_node_id(&typed).as_deref(), Ok(id));
        for bad in [
            "",
            "nope",
            &id[..id.len() - 1],
            &id.replace('5', "1"),
            &id.replace("5FVQ", "5FVB"),
        ] {
            let e = parse_node_id(bad).unwrap_err();
            assert!(e.contains("is not a node id"), "{bad}: {e}");
        }
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_time(1_700_000_000_120), "2023-11-14T22:13:20.120Z");
        assert_eq!(format_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}
