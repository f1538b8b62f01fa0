//! Provenance: which member made each change of a shared record, proved by
//! the signature of the node that made it (docs/protocol.md section 7).
//!
//! Every change to a shared record is signed by its author node's key, over
//! the change's hash; the signature travels with the change through every
//! relay (extension [`SIGNATURES_EXTENSION`] of a `DocUpdate`), and the
//! certificates that bind signers to towns travel in the message
//! ([`CERTIFICATES_EXTENSION`]). A receiver checks every change new to it
//! ([`check_changes`]) against a [`SignerBook`] of keys the node took from
//! certificates it verified against the consortium CA; this crate checks
//! signatures and rules, the node checks certificates (it owns the CA and
//! the revocation list).
//!
//! Signing needs randomness (ECDSA), which this crate never draws: [`sign`]
//! takes the random source as an argument.
//!
//! Changes made before nodes signed (section 7.6) get their signatures
//! late: each node signs its own at upgrade ([`own_unsigned`] says which),
//! and a node that already holds a change takes a signature offered for it
//! later, judged alone ([`check_late_signatures`]); signatures that travel
//! without changes ride in [`SIGNATURE_UPDATES_EXTENSION`].

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::{ActorId, AutoCommit, ChangeHash, ChangeMetadata, ROOT, ReadDoc};
use prost::Message;
use ring::rand::SecureRandom;
use ring::signature::{self, EcdsaKeyPair, UnparsedPublicKey};

use crate::collection::Collection;
use crate::doc::ChangeNote;
use crate::gate::Refused;
use crate::record::RecordView;

/// `DocUpdate` extension: the signatures of the update's changes.
pub const SIGNATURES_EXTENSION: u32 = 1;
/// `SyncRequest` / `SyncResponse` extension: certificates of the signers the
/// message's signatures name, other than the sending node's own (its TLS
/// certificate).
pub const CERTIFICATES_EXTENSION: u32 = 2;
/// `SyncRequest` / `SyncResponse` extension: signature-only document
/// updates (empty `changes`, signatures in [`SIGNATURES_EXTENSION`]) for
/// records the receiver already holds. Outside the `push` and `docs`
/// fields so that an older node, which would refuse an update without
/// changes, ignores them.
pub const SIGNATURE_UPDATES_EXTENSION: u32 = 3;
/// Most signatures in one document update (one per change).
pub const MAX_SIGNATURES: usize = 10_000;
/// Most certificates in one message.
pub const MAX_CERTIFICATES: usize = 2_000;
/// Most bytes of one certificate.
pub const MAX_CERTIFICATE_BYTES: usize = 16 * 1024;

/// What the checks read of a change: its hash, actor, op range, time,
/// note and dependencies, without its operations. Automerge builds a whole
/// [`automerge::Change`] from the document's op columns, which costs more
/// than verifying its signature; the metadata comes from the change graph.
pub type ChangeMeta = ChangeMetadata<'static>;

/// The changes of `doc` that are not in `base` (empty: all), as metadata.
pub fn changes_after(doc: &mut AutoCommit, base: &[ChangeHash]) -> Vec<ChangeMeta> {
    doc.get_changes_meta(base)
        .into_iter()
        .map(ChangeMetadata::into_owned)
        .collect()
}

/// What a signature covers, before the change hash: a fixed context, so a
/// node key's signature over anything else can never pass for one.
const CONTEXT: &[u8] = b"yui change signature v1\0";

/// A signer: the SHA-256 of its SubjectPublicKeyInfo, i.e. the node id's
/// 32 bytes (section 2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignerId(pub [u8; 32]);

impl SignerId {
    pub fn from_slice(bytes: &[u8]) -> Option<SignerId> {
        bytes.try_into().ok().map(SignerId)
    }
}

/// One change's signature: ECDSA P-256 with SHA-256 over
/// `CONTEXT ‖ change hash`, as the fixed 64-byte `r ‖ s`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeSignature {
    pub change: ChangeHash,
    pub signer: SignerId,
    pub signature: Vec<u8>,
}

/// What is signed for `change`.
pub fn signed_bytes(change: &ChangeHash) -> Vec<u8> {
    let mut bytes = CONTEXT.to_vec();
    bytes.extend_from_slice(&change.0);
    bytes
}

/// Signs `change` with a node's key.
pub fn sign(
    key: &EcdsaKeyPair,
    signer: SignerId,
    change: ChangeHash,
    rng: &dyn SecureRandom,
) -> Result<ChangeSignature, ring::error::Unspecified> {
    let signature = key.sign(rng, &signed_bytes(&change))?;
    Ok(ChangeSignature {
        change,
        signer,
        signature: signature.as_ref().to_vec(),
    })
}

/// Whether `sig` is `public_key`'s signature of its change (`public_key`:
/// the uncompressed P-256 point of the certificate's SubjectPublicKeyInfo).
pub fn verify(public_key: &[u8], sig: &ChangeSignature) -> bool {
    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, public_key)
        .verify(&signed_bytes(&sig.change), &sig.signature)
        .is_ok()
}

/// A member key the node has verified: from a certificate that chains to
/// the consortium CA and names its town.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signer {
    pub id: SignerId,
    pub town: String,
    /// The uncompressed P-256 point.
    pub public_key: Vec<u8>,
    /// Revoked: its changes count only where a member in good standing
    /// built on them (section 7.5).
    pub revoked: bool,
}

/// The keys a receiver checks signatures with.
#[derive(Clone, Debug, Default)]
pub struct SignerBook {
    signers: HashMap<SignerId, Signer>,
}

impl SignerBook {
    pub fn new() -> SignerBook {
        SignerBook::default()
    }

    pub fn insert(&mut self, signer: Signer) {
        self.signers.insert(signer.id, signer);
    }

    pub fn get(&self, id: &SignerId) -> Option<&Signer> {
        self.signers.get(id)
    }

    pub fn len(&self) -> usize {
        self.signers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.signers.is_empty()
    }
}

/// Who may change a collection's records (section 7.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Authority {
    /// Only the town that created the record.
    Origin,
    /// Any member; every change is attributed to its town.
    AnyMember,
}

impl Authority {
    pub fn of(collection: Collection) -> Authority {
        match collection {
            Collection::KpiReports | Collection::PilotResults => Authority::Origin,
            _ => Authority::AnyMember,
        }
    }
}

/// The root keys no change after a record's first may set again.
const FIXED_KEYS: [&str; 4] = ["id", "collection", "town", "created_at"];

/// One new change, checked: who signed it, for which town.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributed {
    pub signature: ChangeSignature,
    pub town: String,
}

/// Checks every change of `doc` that is not in `base` (the heads the
/// receiver had; empty for a record new here) against `signatures` and
/// `book`, and the collection's write authority. Answers the new changes'
/// signatures, to store with the document.
pub fn check_changes(
    collection: Collection,
    doc: &mut AutoCommit,
    base: &[ChangeHash],
    view: &RecordView,
    signatures: &HashMap<ChangeHash, ChangeSignature>,
    book: &SignerBook,
) -> Result<Vec<Attributed>, Refused> {
    let new = changes_after(doc, base);
    check_new_changes(collection, doc, base, &new, view, signatures, book)
}

/// [`check_changes`] with the new changes already listed (`gate::admit`
/// lists them once for the time window and the signatures).
pub fn check_new_changes(
    collection: Collection,
    doc: &AutoCommit,
    base: &[ChangeHash],
    new: &[ChangeMeta],
    view: &RecordView,
    signatures: &HashMap<ChangeHash, ChangeSignature>,
    book: &SignerBook,
) -> Result<Vec<Attributed>, Refused> {
    let mut checked: Vec<(Attributed, bool, Vec<ChangeHash>)> = Vec::with_capacity(new.len());
    for change in new {
        let hash = change.hash;
        let Some(sig) = signatures.get(&hash) else {
            return Err((
                "unsigned_change",
                format!("change {hash} carries no signature"),
            ));
        };
        let signer = check_one(collection, change, view, sig, book)?;
        checked.push((
            Attributed {
                signature: sig.clone(),
                town: signer.town.clone(),
            },
            signer.revoked,
            change.deps.clone(),
        ));
    }
    check_revoked(&checked)?;
    check_fixed_keys(doc, base, view, new, &checked)?;
    Ok(checked.into_iter().map(|(a, _, _)| a).collect())
}

/// The checks of 7.3 on one change and its signature (steps 2 to 5): a
/// known signer, a valid signature, the signer's town named in the
/// change's note, the collection's write authority. Answers the signer.
fn check_one<'b>(
    collection: Collection,
    change: &ChangeMeta,
    view: &RecordView,
    sig: &ChangeSignature,
    book: &'b SignerBook,
) -> Result<&'b Signer, Refused> {
    let hash = change.hash;
    let Some(signer) = book.get(&sig.signer) else {
        return Err((
            "unknown_signer",
            format!("change {hash} is signed by a key no verified consortium certificate holds"),
        ));
    };
    if !verify(&signer.public_key, sig) {
        return Err((
            "bad_signature",
            format!("the signature of change {hash} does not verify"),
        ));
    }
    let claimed = change
        .message
        .as_deref()
        .and_then(ChangeNote::parse)
        .map(|n| n.town);
    if claimed.as_deref() != Some(signer.town.as_str()) {
        return Err((
            "wrong_town",
            format!(
                "change {hash} says it is from {:?} but is signed by {}'s key",
                claimed
                    .unwrap_or_default()
                    .chars()
                    .take(40)
                    .collect::<String>(),
                signer.town
            ),
        ));
    }
    if Authority::of(collection) == Authority::Origin && signer.town != view.town {
        return Err((
            "not_the_owner",
            format!(
                "{} records may be changed only by the town that created them ({}), not by {}",
                collection.name(),
                view.town,
                signer.town
            ),
        ));
    }
    Ok(signer)
}

/// A revoked key's change counts only when a change in good standing among
/// the new ones depends on it (section 7.5): a node that held it before it
/// learned of the revocation built on it. Anything else from a revoked key
/// may be back-dated, and is refused.
fn check_revoked(checked: &[(Attributed, bool, Vec<ChangeHash>)]) -> Result<(), Refused> {
    if checked.iter().all(|(_, revoked, _)| !revoked) {
        return Ok(());
    }
    let deps: HashMap<ChangeHash, &[ChangeHash]> = checked
        .iter()
        .map(|(a, _, d)| (a.signature.change, d.as_slice()))
        .collect();
    // Everything the changes in good standing depend on, among the new ones.
    let mut witnessed = BTreeSet::new();
    let mut todo: Vec<ChangeHash> = checked
        .iter()
        .filter(|(_, revoked, _)| !revoked)
        .flat_map(|(_, _, d)| d.iter().copied())
        .collect();
    while let Some(h) = todo.pop() {
        if witnessed.insert(h)
            && let Some(d) = deps.get(&h)
        {
            todo.extend(d.iter().copied());
        }
    }
    for (a, revoked, _) in checked {
        if *revoked && !witnessed.contains(&a.signature.change) {
            return Err((
                "revoked_signer",
                format!(
                    "change {} is signed by a revoked key of {} and no member built on it",
                    a.signature.change, a.town
                ),
            ));
        }
    }
    Ok(())
}

/// The record's id, collection, town and creation time are set once, by
/// its creator: each holds exactly one value, the one it held before these
/// changes, and on a new record the town's value was written by a change
/// that town signed.
fn check_fixed_keys(
    doc: &AutoCommit,
    base: &[ChangeHash],
    view: &RecordView,
    new: &[ChangeMeta],
    checked: &[(Attributed, bool, Vec<ChangeHash>)],
) -> Result<(), Refused> {
    for key in FIXED_KEYS {
        let now = doc.get_all(ROOT, key).unwrap_or_default();
        if now.len() != 1 {
            return Err((
                "fixed_key_changed",
                format!("{key} holds {} values; it is set once", now.len()),
            ));
        }
        if !base.is_empty() {
            let before = doc.get_all_at(ROOT, key, base).unwrap_or_default();
            if before.len() != 1 || before[0].1 != now[0].1 {
                return Err((
                    "fixed_key_changed",
                    format!("{key} was set again after the record was created"),
                ));
            }
        } else if key == "town" {
            // Which new change wrote the town.
            let automerge::ObjId::Id(..) = &now[0].1 else {
                return Err(("fixed_key_changed", "the town is not a value".into()));
            };
            let writer = new.iter().position(|c| wrote(c, &now[0].1));
            let signed_by = writer.map(|i| checked[i].0.town.as_str());
            if signed_by != Some(view.town.as_str()) {
                return Err((
                    "wrong_town",
                    format!(
                        "the record says it is from {} but {} created it",
                        view.town,
                        signed_by.unwrap_or("another key")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Whether `change` made the operation `op` (an object id is the id of the
/// operation that made it: a counter and an actor).
fn wrote(change: &ChangeMeta, op: &automerge::ObjId) -> bool {
    let automerge::ObjId::Id(counter, actor, _) = op else {
        return false;
    };
    // `max_op` is the last op's counter (start_op - 1 for a change of none).
    change.actor.as_ref() == actor && (change.start_op..=change.max_op).contains(counter)
}

// ------------------------------------------------------- late signatures

/// The changes of `doc` a node signs when it upgrades (section 7.6): those
/// it made itself, by one of its `actors`, whose note names its own `town`,
/// and that `signed` (the changes with a stored signature) lacks. A change
/// by another actor is never signed, whoever holds it.
pub fn own_unsigned(
    doc: &mut AutoCommit,
    actors: &[ActorId],
    town: &str,
    signed: &HashSet<ChangeHash>,
) -> Vec<ChangeHash> {
    changes_after(doc, &[])
        .iter()
        .filter(|c| actors.contains(&c.actor))
        .filter(|c| !signed.contains(&c.hash))
        .filter(|c| {
            c.message
                .as_deref()
                .and_then(ChangeNote::parse)
                .is_some_and(|n| n.town == town)
        })
        .map(|c| c.hash)
        .collect()
}

/// What became of signatures offered late, for changes the receiver
/// already held without one.
#[derive(Debug, Default)]
pub struct Late {
    /// The signatures that passed, to store.
    pub signatures: Vec<ChangeSignature>,
    /// The first that failed (a revoked signer's is not a failure).
    pub refused: Option<Refused>,
}

/// Judges late signatures (section 7.6): for each of `changes` (held in
/// `doc`, no stored signature) that `offered` signs, the checks of 7.3 for
/// one change: a known signer, a valid signature, the signer's town named
/// in the change's note, the collection's write authority, and, if the
/// change wrote the record's `town`, a signer of that town. Each is judged
/// alone: the good ones are kept whatever the others are. A revoked
/// signer's is dropped without a refusal: the change is held, and nothing
/// vouches for the signature now (7.5).
pub fn check_late_signatures(
    collection: Collection,
    doc: &mut AutoCommit,
    view: &RecordView,
    changes: &[ChangeHash],
    offered: &HashMap<ChangeHash, ChangeSignature>,
    book: &SignerBook,
) -> Late {
    let mut late = Late::default();
    let town_op = doc
        .get_all(ROOT, "town")
        .ok()
        .and_then(|v| (v.len() == 1).then(|| v[0].1.clone()));
    for hash in changes {
        let change = doc
            .get_change_meta_by_hash(hash)
            .map(ChangeMetadata::into_owned);
        let (Some(sig), Some(change)) = (offered.get(hash), change) else {
            continue;
        };
        let verdict = judge_late(collection, &change, view, town_op.as_ref(), sig, book);
        match verdict {
            Ok(true) => late.signatures.push(sig.clone()),
            Ok(false) => {}
            Err(refused) => {
                late.refused.get_or_insert(refused);
            }
        }
    }
    late
}

/// One late signature: Ok(true) to store, Ok(false) to drop (revoked).
fn judge_late(
    collection: Collection,
    change: &ChangeMeta,
    view: &RecordView,
    town_op: Option<&automerge::ObjId>,
    sig: &ChangeSignature,
    book: &SignerBook,
) -> Result<bool, Refused> {
    let signer = check_one(collection, change, view, sig, book)?;
    if town_op.is_some_and(|op| wrote(change, op)) && signer.town != view.town {
        return Err((
            "wrong_town",
            format!(
                "the record says it is from {} but {} created it",
                view.town, signer.town
            ),
        ));
    }
    Ok(!signer.revoked)
}

// ------------------------------------------------------------------ wire

#[derive(Clone, PartialEq, Message)]
struct SignatureList {
    #[prost(message, repeated, tag = "1")]
    signatures: Vec<SignatureEntry>,
}

#[derive(Clone, PartialEq, Message)]
struct SignatureEntry {
    #[prost(bytes = "vec", tag = "1")]
    change: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    signer: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    signature: Vec<u8>,
}

#[derive(Clone, PartialEq, Message)]
struct CertificateList {
    #[prost(bytes = "vec", repeated, tag = "1")]
    certificates: Vec<Vec<u8>>,
}

/// The extension payload of a document update's signatures.
pub fn encode_signatures(sigs: &[ChangeSignature]) -> Vec<u8> {
    SignatureList {
        signatures: sigs
            .iter()
            .map(|s| SignatureEntry {
                change: s.change.0.to_vec(),
                signer: s.signer.0.to_vec(),
                signature: s.signature.clone(),
            })
            .collect(),
    }
    .encode_to_vec()
}

/// Reads a signatures extension; entries of the wrong shape are an error
/// (the whole update is refused: its sender speaks another format).
pub fn decode_signatures(data: &[u8]) -> Result<Vec<ChangeSignature>, String> {
    let list = SignatureList::decode(data).map_err(|e| format!("signatures: {e}"))?;
    if list.signatures.len() > MAX_SIGNATURES {
        return Err(format!(
            "signatures: {} entries (at most {MAX_SIGNATURES})",
            list.signatures.len()
        ));
    }
    list.signatures
        .into_iter()
        .map(|e| {
            let change = <[u8; 32]>::try_from(e.change.as_slice())
                .map(ChangeHash)
                .map_err(|_| "signatures: a change hash is not 32 bytes".to_owned())?;
            let signer = SignerId::from_slice(&e.signer)
                .ok_or_else(|| "signatures: a signer is not 32 bytes".to_owned())?;
            if e.signature.len() != 64 {
                return Err("signatures: a signature is not 64 bytes".to_owned());
            }
            Ok(ChangeSignature {
                change,
                signer,
                signature: e.signature,
            })
        })
        .collect()
}

/// The extension payload of a message's certificates (DER).
pub fn encode_certificates(ders: &[Vec<u8>]) -> Vec<u8> {
    CertificateList {
        certificates: ders.to_vec(),
    }
    .encode_to_vec()
}

/// Reads a certificates extension, within its limits.
pub fn decode_certificates(data: &[u8]) -> Result<Vec<Vec<u8>>, String> {
    let list = CertificateList::decode(data).map_err(|e| format!("certificates: {e}"))?;
    if list.certificates.len() > MAX_CERTIFICATES {
        return Err(format!(
            "certificates: {} entries (at most {MAX_CERTIFICATES})",
            list.certificates.len()
        ));
    }
    if list
        .certificates
        .iter()
        .any(|c| c.len() > MAX_CERTIFICATE_BYTES)
    {
        return Err(format!(
            "certificates: one is over {MAX_CERTIFICATE_BYTES} bytes"
        ));
    }
    Ok(list.certificates)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doc;
    use crate::record::RecordId;
    use crate::validate::{validate_create, validate_patch};
    use automerge::ActorId;
    use ring::rand::SystemRandom;
    use serde_json::json;

    /// A member: its key, its signer id, its town.
    struct Member {
        key: EcdsaKeyPair,
        id: SignerId,
        town: &'static str,
        actor: ActorId,
    }

    fn member(n: u8, town: &'static str) -> Member {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("key");
        let key = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8.as_ref(),
            &rng,
        )
        .expect("key");
        Member {
            key,
            id: SignerId([n; 32]),
            town,
            actor: ActorId::from([n; 16].as_slice()),
        }
    }

    fn book(members: &[&Member], revoked: &[&str]) -> SignerBook {
        let mut book = SignerBook::new();
        for m in members {
            book.insert(Signer {
                id: m.id,
                town: m.town.to_owned(),
                public_key: ring::signature::KeyPair::public_key(&m.key)
                    .as_ref()
                    .to_vec(),
                revoked: revoked.contains(&m.town),
            });
        }
        book
    }

    /// Signs every change of `doc` after `base` with `by`.
    fn sign_new(
        doc: &mut AutoCommit,
        base: &[ChangeHash],
        by: &Member,
        into: &mut HashMap<ChangeHash, ChangeSignature>,
    ) {
        let rng = SystemRandom::new();
        for c in doc.get_changes(base) {
            let s = sign(&by.key, by.id, c.hash(), &rng).expect("sign");
            into.insert(s.change, s);
        }
    }

    fn record(collection: Collection, by: &Member) -> AutoCommit {
        let fields = match collection {
            Collection::KpiReports => json!({"fiscal_year": 2026, "new_hires": 3}),
            _ => json!({"title": "進め方", "body": "本文", "category": "training"}),
        };
        let fields =
            validate_create(collection, fields.as_object().expect("object")).expect("valid");
        let id = RecordId::generate(1_700_000_000_000, [7; 10]);
        doc::create(
            by.actor.clone(),
            collection,
            &id,
            by.town,
            1_700_000_000_000,
            &fields,
        )
        .expect("create")
    }

    fn edit(doc: &mut AutoCommit, collection: Collection, by: &Member, title: &str) {
        doc.set_actor(by.actor.clone());
        let patch = match collection {
            Collection::KpiReports => json!({"new_hires": title.len()}),
            _ => json!({"title": title}),
        };
        let patch = validate_patch(collection, patch.as_object().expect("object")).expect("valid");
        doc::update(doc, collection, by.town, 1_700_000_100_000, &patch).expect("update");
    }

    fn check(
        collection: Collection,
        doc: &mut AutoCommit,
        base: &[ChangeHash],
        sigs: &HashMap<ChangeHash, ChangeSignature>,
        book: &SignerBook,
    ) -> Result<Vec<Attributed>, Refused> {
        let view = doc::read(doc).expect("read");
        check_changes(collection, doc, base, &view, sigs, book)
    }

    #[test]
    fn a_signed_record_and_another_towns_edit_pass_and_are_attributed() {
        let (a, b) = (member(1, "tateshina"), member(2, "omachi"));
        let mut sigs = HashMap::new();
        let mut doc = record(Collection::Knowledge, &a);
        sign_new(&mut doc, &[], &a, &mut sigs);
        let base = doc.get_heads();
        edit(&mut doc, Collection::Knowledge, &b, "大町の追記");
        sign_new(&mut doc, &base, &b, &mut sigs);
        let found = check(
            Collection::Knowledge,
            &mut doc,
            &[],
            &sigs,
            &book(&[&a, &b], &[]),
        )
        .expect("accepted");
        let towns: Vec<&str> = found.iter().map(|a| a.town.as_str()).collect();
        assert_eq!(towns, ["tateshina", "omachi"]);
        // Only the edit is new to a node that held the record.
        let found = check(
            Collection::Knowledge,
            &mut doc,
            &base,
            &sigs,
            &book(&[&a, &b], &[]),
        )
        .expect("accepted");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].town, "omachi");
    }

    #[test]
    fn unsigned_unknown_forged_and_misattributed_changes_are_refused() {
        let (a, b) = (member(1, "tateshina"), member(2, "omachi"));
        let mut doc = record(Collection::Knowledge, &a);
        let both = book(&[&a, &b], &[]);
        let none = HashMap::new();
        assert_eq!(
            check(Collection::Knowledge, &mut doc, &[], &none, &both)
                .unwrap_err()
                .0,
            "unsigned_change"
        );
        let mut sigs = HashMap::new();
        sign_new(&mut doc, &[], &a, &mut sigs);
        assert_eq!(
            check(
                Collection::Knowledge,
                &mut doc,
                &[],
                &sigs,
                &book(&[&b], &[])
            )
            .unwrap_err()
            .0,
            "unknown_signer"
        );
        // B signs A's change: the note says tateshina, the key is omachi's.
        let mut by_b = HashMap::new();
        sign_new(&mut doc, &[], &b, &mut by_b);
        assert_eq!(
            check(Collection::Knowledge, &mut doc, &[], &by_b, &both)
                .unwrap_err()
                .0,
            "wrong_town"
        );
        // A signature moved to another change, or one flipped bit.
        let mut bent = sigs.clone();
        for s in bent.values_mut() {
            s.signature[10] ^= 1;
        }
        assert_eq!(
            check(Collection::Knowledge, &mut doc, &[], &bent, &both)
                .unwrap_err()
                .0,
            "bad_signature"
        );
    }

    #[test]
    fn a_record_created_as_another_town_is_refused() {
        let b = member(2, "omachi");
        // B's node writes a record whose town and note say tateshina, and
        // signs it with its own key.
        let forged = Member {
            town: "tateshina",
            ..member(2, "omachi")
        };
        let mut doc = record(Collection::Knowledge, &forged);
        let mut sigs = HashMap::new();
        sign_new(&mut doc, &[], &b, &mut sigs);
        let err = check(
            Collection::Knowledge,
            &mut doc,
            &[],
            &sigs,
            &book(&[&b], &[]),
        )
        .unwrap_err();
        assert_eq!(err.0, "wrong_town", "{err:?}");
    }

    #[test]
    fn only_the_origin_town_changes_a_kpi_report() {
        let (a, b) = (member(1, "tateshina"), member(2, "omachi"));
        let both = book(&[&a, &b], &[]);
        let mut sigs = HashMap::new();
        let mut doc = record(Collection::KpiReports, &a);
        sign_new(&mut doc, &[], &a, &mut sigs);
        let base = doc.get_heads();
        edit(&mut doc, Collection::KpiReports, &a, "四");
        sign_new(&mut doc, &base, &a, &mut sigs);
        check(Collection::KpiReports, &mut doc, &base, &sigs, &both).expect("its own town");
        let base = doc.get_heads();
        edit(&mut doc, Collection::KpiReports, &b, "二十");
        sign_new(&mut doc, &base, &b, &mut sigs);
        let err = check(Collection::KpiReports, &mut doc, &base, &sigs, &both).unwrap_err();
        assert_eq!(err.0, "not_the_owner", "{err:?}");
        assert!(
            err.1.contains("tateshina") && err.1.contains("omachi"),
            "{}",
            err.1
        );
    }

    #[test]
    fn the_town_of_a_record_cannot_be_set_again() {
        let (a, b) = (member(1, "tateshina"), member(2, "omachi"));
        let mut sigs = HashMap::new();
        let mut doc = record(Collection::Knowledge, &a);
        sign_new(&mut doc, &[], &a, &mut sigs);
        let base = doc.get_heads();
        doc.set_actor(b.actor.clone());
        automerge::transaction::Transactable::put(&mut doc, ROOT, "town", "omachi").expect("put");
        doc.commit_with(
            automerge::transaction::CommitOptions::default()
                .with_message(r#"{"town":"omachi","summary":"updated"}"#.to_owned()),
        );
        sign_new(&mut doc, &base, &b, &mut sigs);
        let err = check(
            Collection::Knowledge,
            &mut doc,
            &base,
            &sigs,
            &book(&[&a, &b], &[]),
        )
        .unwrap_err();
        assert_eq!(err.0, "fixed_key_changed", "{err:?}");
    }

    #[test]
    fn a_revoked_keys_change_counts_only_when_a_member_built_on_it() {
        let (a, b) = (member(1, "tateshina"), member(2, "omachi"));
        let revoked_a = book(&[&a, &b], &["tateshina"]);
        let mut sigs = HashMap::new();
        let mut doc = record(Collection::Knowledge, &a);
        sign_new(&mut doc, &[], &a, &mut sigs);
        // Alone, after the revocation: refused (it may be back-dated).
        let err = check(Collection::Knowledge, &mut doc, &[], &sigs, &revoked_a).unwrap_err();
        assert_eq!(err.0, "revoked_signer", "{err:?}");
        // B held it before it learned of the revocation and edited it.
        let base = doc.get_heads();
        edit(&mut doc, Collection::Knowledge, &b, "大町の追記");
        sign_new(&mut doc, &base, &b, &mut sigs);
        let found = check(Collection::Knowledge, &mut doc, &[], &sigs, &revoked_a)
            .expect("witnessed by omachi");
        assert_eq!(found.len(), 2);
        // A's later change, on top of B's: nobody built on it.
        let base = doc.get_heads();
        edit(&mut doc, Collection::Knowledge, &a, "失効後の変更");
        sign_new(&mut doc, &base, &a, &mut sigs);
        let err = check(Collection::Knowledge, &mut doc, &base, &sigs, &revoked_a).unwrap_err();
        assert_eq!(err.0, "revoked_signer", "{err:?}");
    }

    #[test]
    fn the_extensions_round_trip_and_refuse_bad_shapes() {
        let a = member(1, "tateshina");
        let mut sigs = HashMap::new();
        let mut doc = record(Collection::Knowledge, &a);
        sign_new(&mut doc, &[], &a, &mut sigs);
        let list: Vec<ChangeSignature> = sigs.values().cloned().collect();
        assert_eq!(
            decode_signatures(&encode_signatures(&list)).expect("decode"),
            list
        );
        let short = SignatureList {
            signatures: vec![SignatureEntry {
                change: vec![1; 31],
                signer: vec![2; 32],
                signature: vec![3; 64],
            }],
        }
        .encode_to_vec();
        assert!(decode_signatures(&short).is_err());
        let certs = vec![vec![0x30, 0x03, 1, 2, 3]];
        assert_eq!(
            decode_certificates(&encode_certificates(&certs)).expect("decode"),
            certs
        );
        assert!(
            decode_certificates(&encode_certificates(&[vec![0; MAX_CERTIFICATE_BYTES + 1]]))
                .is_err()
        );
    }

    #[test]
    fn at_upgrade_a_node_signs_only_its_own_unsigned_changes() {
        let (a, b) = (member(1, "tateshina"), member(2, "omachi"));
        let mut doc = record(Collection::Knowledge, &a);
        let created = doc.get_heads();
        edit(&mut doc, Collection::Knowledge, &b, "大町の追記");
        let by_b = doc.get_heads();
        edit(&mut doc, Collection::Knowledge, &a, "立科の改訂");
        let by_a = doc.get_heads();
        let actors = [a.actor.clone()];
        let mut own = own_unsigned(&mut doc, &actors, "tateshina", &HashSet::new());
        own.sort();
        let mut expected = vec![created[0], by_a[0]];
        expected.sort();
        assert_eq!(own, expected, "A's two changes, never B's");
        // Already signed: nothing to do again.
        let signed: HashSet<ChangeHash> = [created[0]].into();
        assert_eq!(
            own_unsigned(&mut doc, &actors, "tateshina", &signed),
            [by_a[0]]
        );
        // Its actor but another town's note: not a change this node made.
        assert!(own_unsigned(&mut doc, &actors, "omachi", &HashSet::new()).is_empty());
        assert!(
            !own_unsigned(
                &mut doc,
                std::slice::from_ref(&b.actor),
                "omachi",
                &HashSet::new()
            )
            .is_empty()
        );
        assert_ne!(by_b, by_a);
    }

    /// Each of `changes` signed by `by`, as an offer.
    fn offer(by: &Member, changes: &[ChangeHash]) -> HashMap<ChangeHash, ChangeSignature> {
        let rng = SystemRandom::new();
        changes
            .iter()
            .map(|h| (*h, sign(&by.key, by.id, *h, &rng).expect("sign")))
            .collect()
    }

    fn late(
        collection: Collection,
        doc: &mut AutoCommit,
        changes: &[ChangeHash],
        offered: &HashMap<ChangeHash, ChangeSignature>,
        book: &SignerBook,
    ) -> Late {
        let view = doc::read(doc).expect("read");
        check_late_signatures(collection, doc, &view, changes, offered, book)
    }

    #[test]
    fn late_signatures_pass_the_checks_of_a_new_change_each_alone() {
        let (a, b) = (member(1, "tateshina"), member(2, "omachi"));
        let both = book(&[&a, &b], &[]);
        let mut doc = record(Collection::Knowledge, &a);
        let created = doc.get_heads()[0];
        edit(&mut doc, Collection::Knowledge, &b, "大町の追記");
        let edited = doc.get_heads()[0];

        // Each by its author: both pass.
        let mut offered = offer(&a, &[created]);
        offered.extend(offer(&b, &[edited]));
        let found = late(
            Collection::Knowledge,
            &mut doc,
            &[created, edited],
            &offered,
            &both,
        );
        assert_eq!(found.signatures.len(), 2);
        assert!(found.refused.is_none());

        // B signs A's change (the note says tateshina): refused, and B's
        // good one for its own change is kept all the same.
        let mut forged = offer(&b, &[created, edited]);
        let found = late(
            Collection::Knowledge,
            &mut doc,
            &[created, edited],
            &forged,
            &both,
        );
        assert_eq!(found.refused.expect("refused").0, "wrong_town");
        assert_eq!(
            found
                .signatures
                .iter()
                .map(|s| s.change)
                .collect::<Vec<_>>(),
            [edited]
        );
        // Garbage, and a key nobody vouched for.
        for s in forged.values_mut() {
            s.signature = vec![7; 64];
            s.signer = a.id;
        }
        let found = late(Collection::Knowledge, &mut doc, &[created], &forged, &both);
        assert_eq!(found.refused.expect("refused").0, "bad_signature");
        assert!(found.signatures.is_empty());
        let found = late(
            Collection::Knowledge,
            &mut doc,
            &[created],
            &offer(&a, &[created]),
            &book(&[&b], &[]),
        );
        assert_eq!(found.refused.expect("refused").0, "unknown_signer");

        // A revoked key's: not stored, and not a failure (the change is held).
        let found = late(
            Collection::Knowledge,
            &mut doc,
            &[created],
            &offer(&a, &[created]),
            &book(&[&a, &b], &["tateshina"]),
        );
        assert!(found.signatures.is_empty() && found.refused.is_none());

        // A change the caller did not list is not judged.
        let found = late(Collection::Knowledge, &mut doc, &[], &offered, &both);
        assert!(found.signatures.is_empty() && found.refused.is_none());
    }

    #[test]
    fn a_late_signature_keeps_write_authority_and_the_creators_town() {
        let (a, b) = (member(1, "tateshina"), member(2, "omachi"));
        let both = book(&[&a, &b], &[]);
        // An old KPI report of A that B changed before anyone signed.
        let mut report = record(Collection::KpiReports, &a);
        edit(&mut report, Collection::KpiReports, &b, "二十");
        let changed = report.get_heads()[0];
        let found = late(
            Collection::KpiReports,
            &mut report,
            &[changed],
            &offer(&b, &[changed]),
            &both,
        );
        assert_eq!(found.refused.expect("refused").0, "not_the_owner");
        // B's node made a record and then, in a change whose note says
        // omachi, set its town to tateshina: B's signature of that change
        // is refused (the town is the creator's, proved by its signature),
        // of the first one is not.
        let mut doc = record(Collection::Knowledge, &b);
        let created = doc.get_heads()[0];
        automerge::transaction::Transactable::put(&mut doc, ROOT, "town", "tateshina")
            .expect("put");
        doc.commit_with(
            automerge::transaction::CommitOptions::default()
                .with_message(r#"{"town":"omachi","summary":"updated"}"#.to_owned()),
        );
        let moved = doc.get_heads()[0];
        let found = late(
            Collection::Knowledge,
            &mut doc,
            &[created, moved],
            &offer(&b, &[created, moved]),
            &both,
        );
        assert_eq!(found.refused.expect("refused").0, "wrong_town");
        assert_eq!(
            found
                .signatures
                .iter()
                .map(|s| s.change)
                .collect::<Vec<_>>(),
            [created]
        );
    }

    proptest::proptest! {
        #[test]
        fn hostile_extension_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode_signatures(&bytes);
            let _ = decode_certificates(&bytes);
        }

        #[test]
        fn a_hostile_signature_never_verifies(sig in proptest::collection::vec(proptest::prelude::any::<u8>(), 64), key in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let s = ChangeSignature { change: ChangeHash([9; 32]), signer: SignerId([1; 32]), signature: sig };
            proptest::prop_assert!(!verify(&key, &s));
        }
    }
}
