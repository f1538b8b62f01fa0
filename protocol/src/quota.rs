//! Quotas on what a node stores from its peers, per **origin town** (the
//! `town` of the record document) and shared collection: new records a
//! day, bytes received a day, and bytes stored in all. The node keeps the
//! usage (in the same transaction as the documents it charges) and asks
//! [`check`] before it stores a document from a peer; a document over a
//! limit is refused `quota_exceeded`, and since only stored documents are
//! offered to other peers, it is never relayed either.
//!
//! The day is the receiver's: the caller passes usage already reset at the
//! turn of its day (JST on a node). This module reads no clock.
//!
//! The daily limits are for fresh writes: a document whose record was
//! updated (by its claim) within [`FRESH`] of the receiver's clock. Older
//! history — what a node joining the consortium, refilling after a
//! restore, or reconnecting after days offline receives — counts against
//! the bytes stored only: it is legitimately large, and a refusal is final
//! for that content, so a daily limit would leave such a node incomplete.
//!
//! Until changes are signed, the origin town is the sender's claim: a
//! member can charge its documents to another town, or to town ids it
//! makes up (each of which then has a quota of its own). See
//! `docs/operations.md`, quotas.

use serde::Serialize;

use crate::collection::Collection;
use crate::gate::Refused;

/// How recent a record's claimed `updated_at` must be, by the receiver's
/// clock, for its document to count against the daily limits: one day.
pub const FRESH: crate::record::Millis = 24 * 60 * 60 * 1000;

/// New records a day per origin town and collection, by default: ten
/// times a bulk import of a town's existing cases on the day it joins
/// (a refusal is final for that content, so an honest day must fit).
pub const DEFAULT_RECORDS_PER_DAY: u64 = 5_000;
/// Bytes received a day per origin town and collection, by default
/// (100 MB: 5,000 records of 20 kB).
pub const DEFAULT_BYTES_PER_DAY: u64 = 100_000_000;
/// Bytes stored per origin town and collection, by default (2 GB).
pub const DEFAULT_STORED_BYTES: u64 = 2_000_000_000;

/// The limits of one origin town in one collection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Quota {
    /// Records new to the receiver, a day.
    pub records_per_day: u64,
    /// Automerge bytes of the updates stored, a day (as received,
    /// uncompressed), new records and changes alike.
    pub bytes_per_day: u64,
    /// Bytes of the town's records in the collection that peers brought
    /// in, as stored.
    pub stored_bytes: u64,
}

impl Default for Quota {
    fn default() -> Quota {
        Quota {
            records_per_day: DEFAULT_RECORDS_PER_DAY,
            bytes_per_day: DEFAULT_BYTES_PER_DAY,
            stored_bytes: DEFAULT_STORED_BYTES,
        }
    }
}

/// A node's quotas: one [`Quota`] for every shared collection, with
/// overrides per collection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quotas {
    pub default: Quota,
    pub overrides: Vec<(Collection, Quota)>,
}

impl Quotas {
    /// The limits of `collection`.
    pub fn of(&self, collection: Collection) -> Quota {
        self.overrides
            .iter()
            .find(|(c, _)| *c == collection)
            .map_or(self.default, |(_, q)| *q)
    }
}

/// What one origin town has used of one collection's quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub records_today: u64,
    pub bytes_today: u64,
    pub stored_bytes: u64,
}

/// What storing one document costs its origin town.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The record is new to the receiver.
    pub new_record: bool,
    /// The record was updated within [`FRESH`] (by its claim): the daily
    /// limits apply. Otherwise it is history and counts against the bytes
    /// stored only.
    pub fresh: bool,
    /// The update's Automerge bytes as received.
    pub received: u64,
    /// Stored size after, minus stored size before (negative when a merge
    /// saves smaller).
    pub stored_delta: i64,
}

impl Usage {
    /// The usage after `charge`.
    pub fn after(self, charge: Charge) -> Usage {
        let today = u64::from(charge.fresh);
        Usage {
            records_today: self.records_today + today * u64::from(charge.new_record),
            bytes_today: self.bytes_today.saturating_add(today * charge.received),
            stored_bytes: self.stored_bytes.saturating_add_signed(charge.stored_delta),
        }
    }

    /// The largest share of a limit used, in percent (may exceed 100 after
    /// a limit was lowered).
    pub fn percent_of(&self, quota: &Quota) -> u64 {
        let share = |used: u64, limit: u64| used.saturating_mul(100) / limit.max(1);
        share(self.records_today, quota.records_per_day)
            .max(share(self.bytes_today, quota.bytes_per_day))
            .max(share(self.stored_bytes, quota.stored_bytes))
    }
}

/// Whether `town` may be charged `charge` in `collection`, having used
/// `usage` of `quota`: the refusal names the town, the collection and the
/// limit.
pub fn check(
    town: &str,
    collection: Collection,
    quota: &Quota,
    usage: &Usage,
    charge: Charge,
) -> Result<(), Refused> {
    let after = usage.after(charge);
    let refuse = |limit: String, used: String| {
        Err((
            "quota_exceeded",
            format!(
                "quota exceeded for town {town} in {}: {limit} ({used}); the receiver's administrator sets the limits",
                collection.name()
            ),
        ))
    };
    if charge.fresh && charge.new_record && after.records_today > quota.records_per_day {
        return refuse(
            format!("at most {} new records a day (JST)", quota.records_per_day),
            format!("{} received today", usage.records_today),
        );
    }
    if charge.fresh && after.bytes_today > quota.bytes_per_day {
        return refuse(
            format!("at most {} bytes a day (JST)", quota.bytes_per_day),
            format!(
                "{} received today, this update {}",
                usage.bytes_today, charge.received
            ),
        );
    }
    if charge.stored_delta > 0 && after.stored_bytes > quota.stored_bytes {
        return refuse(
            format!("at most {} bytes stored", quota.stored_bytes),
            format!(
                "{} stored, this update adds {}",
                usage.stored_bytes, charge.stored_delta
            ),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: Quota = Quota {
        records_per_day: 2,
        bytes_per_day: 1_000,
        stored_bytes: 1_500,
    };

    fn new(received: u64) -> Charge {
        Charge {
            new_record: true,
            fresh: true,
            received,
            stored_delta: received as i64,
        }
    }

    #[test]
    fn each_limit_refuses_the_document_that_would_pass_it() {
        let c = Collection::Knowledge;
        let mut usage = Usage::default();
        for _ in 0..2 {
            assert_eq!(check("evil", c, &SMALL, &usage, new(100)), Ok(()));
            usage = usage.after(new(100));
        }
        let (code, message) = check("evil", c, &SMALL, &usage, new(100)).unwrap_err();
        assert_eq!(code, "quota_exceeded");
        assert!(
            message.contains("town evil")
                && message.contains("knowledge")
                && message.contains("at most 2 new records a day"),
            "{message}"
        );
        // A change to a record already here is not a new record.
        let change = Charge {
            new_record: false,
            fresh: true,
            received: 700,
            stored_delta: 700,
        };
        assert_eq!(check("evil", c, &SMALL, &usage, change), Ok(()));
        usage = usage.after(change);
        let (_, message) = check(
            "evil",
            c,
            &SMALL,
            &usage,
            Charge {
                received: 201,
                ..change
            },
        )
        .unwrap_err();
        assert!(message.contains("at most 1000 bytes a day"), "{message}");
        // Stored bytes: a new day, the same records.
        let next_day = Usage {
            stored_bytes: usage.stored_bytes,
            ..Usage::default()
        };
        let (_, message) = check("evil", c, &SMALL, &next_day, change).unwrap_err();
        assert!(message.contains("at most 1500 bytes stored"), "{message}");
        // A merge that saves smaller is never refused for the stored bytes.
        let smaller = Charge {
            new_record: false,
            fresh: true,
            received: 10,
            stored_delta: -50,
        };
        assert_eq!(check("evil", c, &SMALL, &next_day, smaller), Ok(()));
        assert_eq!(next_day.after(smaller).stored_bytes, 850);
        // History (a catch-up) passes the daily limits, not the stored one.
        let history = Charge {
            fresh: false,
            ..new(100)
        };
        assert_eq!(check("evil", c, &SMALL, &usage, history), Ok(()));
        assert_eq!(usage.after(history).records_today, usage.records_today);
        let (_, message) = check(
            "evil",
            c,
            &SMALL,
            &next_day,
            Charge {
                fresh: false,
                ..change
            },
        )
        .unwrap_err();
        assert!(message.contains("bytes stored"), "{message}");
    }

    #[test]
    fn overrides_apply_to_their_collection_only() {
        let quotas = Quotas {
            default: SMALL,
            overrides: vec![(
                Collection::FailureCases,
                Quota {
                    records_per_day: 9,
                    ..SMALL
                },
            )],
        };
        assert_eq!(quotas.of(Collection::FailureCases).records_per_day, 9);
        assert_eq!(quotas.of(Collection::Knowledge), SMALL);
        assert_eq!(
            Usage {
                records_today: 1,
                bytes_today: 900,
                stored_bytes: 0
            }
            .percent_of(&SMALL),
            90
        );
    }
}
