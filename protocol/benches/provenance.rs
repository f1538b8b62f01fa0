//! What signed changes cost (issue 12): signing one change, verifying one
//! signature, and the whole provenance check of a record new to the
//! receiver (`provenance::check_changes`, one change, as in an initial
//! sync), next to what `doc::read` of the same record costs.
//!
//! ```text
//! cargo bench -p yui-protocol --bench provenance
//! ```
//!
//! The sync-level figure (initial sync of 10,000 records with and without
//! signatures) is `cargo bench -p yui-node --bench sync`; this one says how
//! much of it is the cryptography itself.
#![allow(clippy::print_stdout, clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Instant;

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use yui_protocol::provenance::{self, Signer, SignerBook, SignerId};
use yui_protocol::validate::validate_create;
use yui_protocol::{Collection, RecordId, doc};

const N: usize = 2_000;

fn main() {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let key =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let id = SignerId([7; 32]);
    let mut book = SignerBook::new();
    book.insert(Signer {
        id,
        town: "tateshina".into(),
        public_key: key.public_key().as_ref().to_vec(),
        revoked: false,
    });
    let fields = validate_create(
        Collection::Knowledge,
        serde_json::json!({"title": "研修の進め方", "body": "ワーカーの稼働状況を週次で確認する。".repeat(20), "category": "training"})
            .as_object()
            .unwrap(),
    )
    .unwrap();
    let docs: Vec<_> = (0..N)
        .map(|i| {
            let rid = RecordId::generate(1_700_000_000_000 + i as i64, [(i % 251) as u8; 10]);
            doc::create(
                automerge::ActorId::from([(i % 251) as u8; 16].as_slice()),
                Collection::Knowledge,
                &rid,
                "tateshina",
                1_700_000_000_000,
                &fields,
            )
            .unwrap()
        })
        .collect();
    let hashes: Vec<_> = docs.iter().map(|d| d.clone().get_heads()[0]).collect();

    let t = Instant::now();
    let sigs: Vec<_> = hashes
        .iter()
        .map(|h| provenance::sign(&key, id, *h, &rng).unwrap())
        .collect();
    let sign = t.elapsed() / N as u32;

    let t = Instant::now();
    for s in &sigs {
        assert!(provenance::verify(key.public_key().as_ref(), s));
    }
    let verify = t.elapsed() / N as u32;

    let mut docs = docs;
    let t = Instant::now();
    for d in &mut docs {
        doc::read(d).unwrap();
    }
    let read = t.elapsed() / N as u32;

    // The gate lists a record's new changes once (for the time window too),
    // as metadata; for scale, what building whole changes would cost.
    let t = Instant::now();
    let listed: Vec<_> = docs
        .iter_mut()
        .map(|d| provenance::changes_after(d, &[]))
        .collect();
    let list = t.elapsed() / N as u32;
    let t = Instant::now();
    for d in &mut docs {
        d.get_changes(&[]);
    }
    let whole = t.elapsed() / N as u32;
    let views: Vec<_> = docs.iter_mut().map(|d| doc::read(d).unwrap()).collect();
    let t = Instant::now();
    for (((d, s), new), view) in docs.iter().zip(&sigs).zip(&listed).zip(&views) {
        let by_hash = HashMap::from([(s.change, s.clone())]);
        provenance::check_new_changes(Collection::Knowledge, d, &[], new, view, &by_hash, &book)
            .unwrap();
    }
    let check = t.elapsed() / N as u32;

    println!("# Provenance costs, one change per record, {N} records, one thread");
    println!();
    println!("| step | per change | × 10,000 |");
    println!("| --- | --- | --- |");
    for (what, d) in [
        ("sign (ECDSA P-256, ring)", sign),
        ("verify one signature", verify),
        ("check_new_changes of a new record (verify + rules)", check),
        (
            "listing its changes as metadata (changes_after, once by the gate)",
            list,
        ),
        (
            "for scale: listing them as whole changes (get_changes)",
            whole,
        ),
        ("for scale: doc::read of the same record", read),
    ] {
        println!(
            "| {what} | {:.1} µs | {:.2} s |",
            d.as_secs_f64() * 1e6,
            d.as_secs_f64() * 10_000.0
        );
    }
}
