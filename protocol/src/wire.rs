//! The peer wire format, version 1: Protocol Buffers messages (see
//! `docs/protocol.md` for the `.proto` text), their limits, and the checks
//! every byte from a peer passes before Automerge sees it.
//!
//! Protobuf was chosen for three reasons: unknown fields are skipped, which
//! leaves room for extensions (field 15 of every message: per-change
//! signatures and signers' certificates, `provenance`); a compatible node can be written in any language from
//! the schema; and the decoder (prost) checks every declared length against
//! the bytes actually present before allocating, so a capped body bounds what
//! a hostile peer can make us allocate.
//!
//! Automerge 0.12 panics or burns CPU on some crafted inputs and inflates
//! deflated columns without limit. Yui therefore accepts only *uncompressed*
//! Automerge chunks from peers — document chunks (type 0) without deflated
//! columns and change chunks (type 1) — and checks their framing and counts
//! here ([`check_automerge_chunks`]). Compression is done once, for the whole
//! message, by the transport, where inflation is capped.

use std::collections::HashMap;

use automerge::ChangeHash;
use prost::Message;

use crate::collection::Collection;
use crate::provenance::{
    ChangeSignature, SIGNATURE_UPDATES_EXTENSION, SIGNATURES_EXTENSION, decode_signatures,
};
use crate::record::RecordId;

/// The protocol version this code speaks. A peer speaking another major
/// version is refused with a clear error.
pub const PROTOCOL_VERSION: u32 = 1;
/// Most bytes of one message after decompression.
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024 * 1024;
/// Most document updates in one message.
pub const MAX_DOCS_PER_MESSAGE: usize = 5_000;
/// Most bytes of Automerge data in one document update.
pub const MAX_CHANGE_BYTES: usize = 4 * 1024 * 1024;
/// Most heads listed for one document.
pub const MAX_HEADS: usize = 256;
/// Longest a long poll may be held, in milliseconds.
pub const MAX_WAIT_MS: u32 = 30_000;

/// An extension field: a tag and opaque bytes. Unknown tags are ignored.
#[derive(Clone, PartialEq, Message)]
pub struct Extension {
    #[prost(uint32, tag = "1")]
    pub tag: u32,
    #[prost(bytes = "vec", tag = "2")]
    pub data: Vec<u8>,
}

/// One document's news: the Automerge changes the receiver is believed to
/// lack, and the sender's heads after them. A *signature-only* update
/// carries no changes, only signatures (protocol.md 7.6); it travels in
/// the message's [`SIGNATURE_UPDATES_EXTENSION`], not in `push` or `docs`
/// ([`SyncRequest::to_wire`]).
#[derive(Clone, PartialEq, Message)]
pub struct DocUpdate {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub collection: String,
    /// The sender's heads of the document (32-byte change hashes).
    #[prost(bytes = "vec", repeated, tag = "3")]
    pub heads: Vec<Vec<u8>>,
    /// Uncompressed Automerge chunks: one document chunk (the whole document)
    /// or change chunks (the changes after what the receiver has).
    #[prost(bytes = "vec", tag = "4")]
    pub changes: Vec<u8>,
    /// The position of this record in the sender's change feed.
    #[prost(uint64, tag = "5")]
    pub seq: u64,
    #[prost(message, repeated, tag = "15")]
    pub extensions: Vec<Extension>,
}

/// Client → server, `POST /yui/v1/sync`.
#[derive(Clone, PartialEq, Message)]
pub struct SyncRequest {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// Pull: send me your shared records changed after this point of your
    /// change feed. Ignored unless `pull` is set.
    #[prost(uint64, tag = "2")]
    pub since: u64,
    #[prost(bool, tag = "3")]
    pub pull: bool,
    /// Long poll: when there is nothing to send, hold the answer up to this
    /// long for news (0 = answer at once).
    #[prost(uint32, tag = "4")]
    pub wait_ms: u32,
    /// Push: the client's news.
    #[prost(message, repeated, tag = "5")]
    pub push: Vec<DocUpdate>,
    /// The number of the newest revocation list the client holds.
    #[prost(uint64, tag = "6")]
    pub revocation_number: u64,
    /// A revocation list (DER) newer than the server's, if the client knows
    /// the server's number is lower.
    #[prost(bytes = "vec", optional, tag = "7")]
    pub revocations: Option<Vec<u8>>,
    /// Documents of the server's last answer that the client could not
    /// apply: send them again from these heads.
    #[prost(message, repeated, tag = "8")]
    pub needs: Vec<Need>,
    /// The client's feed epoch (see `sync`): changes when its database was
    /// restored from a backup.
    #[prost(uint64, tag = "9")]
    pub epoch: u64,
    /// The server's epoch as the client last saw it (0: never), i.e. the
    /// epoch `since` refers to. A server with another epoch answers at once
    /// instead of holding a long poll.
    #[prost(uint64, tag = "10")]
    pub server_epoch: u64,
    /// How far through the server's feed the client has stored what it
    /// pulled, when that is less than `since`: a client that asks for the
    /// next batch while it is still storing the last one. The server then
    /// takes only this far as delivered. Absent: `since` is stored too.
    /// Only sent to servers whose answers set `confirms_separately`.
    #[prost(uint64, optional, tag = "11")]
    pub confirmed: Option<u64>,
    #[prost(message, repeated, tag = "15")]
    pub extensions: Vec<Extension>,
}

/// A document the receiver could not apply because changes it depends on
/// are missing; the sender should send again from `have`.
#[derive(Clone, PartialEq, Message)]
pub struct Need {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(bytes = "vec", repeated, tag = "2")]
    pub have: Vec<Vec<u8>>,
}

/// A document the receiver refused, and why (`local_collection`,
/// `invalid_changes`, `schema_violation`, …). Refusals are final: sending
/// the same again is refused again.
#[derive(Clone, PartialEq, Message)]
pub struct Refusal {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(string, tag = "2")]
    pub code: String,
    #[prost(string, tag = "3")]
    pub message: String,
}

/// Server → client.
#[derive(Clone, PartialEq, Message)]
pub struct SyncResponse {
    #[prost(uint32, tag = "1")]
    pub version: u32,
    /// The server's news, when the client pulled.
    #[prost(message, repeated, tag = "2")]
    pub docs: Vec<DocUpdate>,
    /// The point of the server's change feed these docs bring the client to.
    #[prost(uint64, tag = "3")]
    pub cursor: u64,
    /// More news is waiting: pull again at once.
    #[prost(bool, tag = "4")]
    pub more: bool,
    /// Pushed documents that need resending from the given heads.
    #[prost(message, repeated, tag = "5")]
    pub needs: Vec<Need>,
    /// Pushed documents refused.
    #[prost(message, repeated, tag = "6")]
    pub refused: Vec<Refusal>,
    #[prost(uint64, tag = "7")]
    pub revocation_number: u64,
    /// The server's revocation list (DER), when newer than the client's.
    #[prost(bytes = "vec", optional, tag = "8")]
    pub revocations: Option<Vec<u8>>,
    /// The server's feed epoch.
    #[prost(uint64, tag = "9")]
    pub epoch: u64,
    /// The server honours the request's `confirmed`, so the client may ask
    /// for the next batch before it has stored this one.
    #[prost(bool, tag = "10")]
    pub confirms_separately: bool,
    #[prost(message, repeated, tag = "15")]
    pub extensions: Vec<Extension>,
}

/// Why a message from a peer was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    #[error("undecodable message: {0}")]
    Decode(String),
    #[error("peer speaks protocol version {0}; this node speaks {PROTOCOL_VERSION}")]
    Version(u32),
    #[error("{0} document updates in one message; the limit is {MAX_DOCS_PER_MESSAGE}")]
    TooManyDocs(usize),
    #[error("long poll of {0} ms exceeds the limit of {MAX_WAIT_MS}")]
    WaitTooLong(u32),
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    M::decode(bytes).map_err(|e| WireError::Decode(e.to_string()))
}

/// The extension holding signature-only updates (protocol.md 7.6).
#[derive(Clone, PartialEq, Message)]
struct SignatureUpdates {
    #[prost(message, repeated, tag = "1")]
    docs: Vec<DocUpdate>,
}

impl DocUpdate {
    /// Carries signatures only, for changes the receiver holds (7.6).
    pub fn is_signature_only(&self) -> bool {
        self.changes.is_empty()
    }
}

/// `docs` without their signature-only updates, which go into an
/// extension instead: an older node, which would refuse an update without
/// changes, ignores it. None when there are none (nothing to copy).
fn split_signature_only(docs: &[DocUpdate]) -> Option<(Vec<DocUpdate>, Extension)> {
    if !docs.iter().any(DocUpdate::is_signature_only) {
        return None;
    }
    let (late, with_changes): (Vec<DocUpdate>, Vec<DocUpdate>) =
        docs.iter().cloned().partition(DocUpdate::is_signature_only);
    let ext = Extension {
        tag: SIGNATURE_UPDATES_EXTENSION,
        data: SignatureUpdates { docs: late }.encode_to_vec(),
    };
    Some((with_changes, ext))
}

/// Takes the signature-only updates out of a message's extensions.
fn take_signature_only(extensions: &mut Vec<Extension>) -> Result<Vec<DocUpdate>, WireError> {
    let mut docs = Vec::new();
    let mut rest = Vec::with_capacity(extensions.len());
    for ext in std::mem::take(extensions) {
        if ext.tag == SIGNATURE_UPDATES_EXTENSION {
            let found = SignatureUpdates::decode(ext.data.as_slice())
                .map_err(|e| WireError::Decode(format!("signature-only updates: {e}")))?;
            docs.extend(found.docs);
        } else {
            rest.push(ext);
        }
    }
    *extensions = rest;
    Ok(docs)
}

impl SyncRequest {
    /// The message's bytes, its signature-only updates moved from `push`
    /// into their extension.
    pub fn to_wire(&self) -> Vec<u8> {
        match split_signature_only(&self.push) {
            None => self.encode_to_vec(),
            Some((push, ext)) => {
                let mut out = SyncRequest {
                    push,
                    ..self.clone()
                };
                out.extensions.push(ext);
                out.encode_to_vec()
            }
        }
    }

    /// Decodes and checks the message-level limits. Signature-only updates
    /// come back into `push`, after the others.
    pub fn decode_checked(bytes: &[u8]) -> Result<SyncRequest, WireError> {
        let mut req: SyncRequest = decode(bytes)?;
        if req.version != PROTOCOL_VERSION {
            return Err(WireError::Version(req.version));
        }
        let late = take_signature_only(&mut req.extensions)?;
        req.push.extend(late);
        if req.push.len() > MAX_DOCS_PER_MESSAGE {
            return Err(WireError::TooManyDocs(req.push.len()));
        }
        if req.wait_ms > MAX_WAIT_MS {
            return Err(WireError::WaitTooLong(req.wait_ms));
        }
        Ok(req)
    }
}

impl SyncResponse {
    /// The message's bytes, its signature-only updates moved from `docs`
    /// into their extension.
    pub fn to_wire(&self) -> Vec<u8> {
        match split_signature_only(&self.docs) {
            None => self.encode_to_vec(),
            Some((docs, ext)) => {
                let mut out = SyncResponse {
                    docs,
                    ..self.clone()
                };
                out.extensions.push(ext);
                out.encode_to_vec()
            }
        }
    }

    /// Decodes and checks the message-level limits. Signature-only updates
    /// come back into `docs`, after the others.
    pub fn decode_checked(bytes: &[u8]) -> Result<SyncResponse, WireError> {
        let mut resp: SyncResponse = decode(bytes)?;
        if resp.version != PROTOCOL_VERSION {
            return Err(WireError::Version(resp.version));
        }
        let late = take_signature_only(&mut resp.extensions)?;
        resp.docs.extend(late);
        if resp.docs.len() > MAX_DOCS_PER_MESSAGE {
            return Err(WireError::TooManyDocs(resp.docs.len()));
        }
        Ok(resp)
    }
}

/// Why one document update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    #[error("{0:?} is not a record id")]
    BadId(String),
    #[error("unknown collection {0:?}")]
    UnknownCollection(String),
    #[error("collection {0} is local to its town and never syncs")]
    LocalCollection(Collection),
    #[error("bad heads: {0}")]
    BadHeads(String),
    #[error("bad Automerge data: {0}")]
    BadChunks(String),
    #[error("bad signatures extension: {0}")]
    BadSignatures(String),
}

impl UpdateError {
    /// The stable code sent back in a [`Refusal`].
    pub fn code(&self) -> &'static str {
        match self {
            UpdateError::BadId(_) => "invalid_id",
            UpdateError::UnknownCollection(_) => "unknown_collection",
            UpdateError::LocalCollection(_) => "local_collection",
            UpdateError::BadHeads(_) | UpdateError::BadChunks(_) => "invalid_changes",
            UpdateError::BadSignatures(_) => "invalid_signatures",
        }
    }
}

/// A document update whose framing has been checked: its id parses, its
/// collection is shared, its heads are hashes and its Automerge bytes are
/// uncompressed, well-framed chunks within limits.
#[derive(Debug, Clone)]
pub struct CheckedUpdate {
    pub id: RecordId,
    pub collection: Collection,
    pub heads: Vec<[u8; 32]>,
    pub changes: Vec<u8>,
    /// The signatures of the changes (section 7), by change hash.
    pub signatures: HashMap<ChangeHash, ChangeSignature>,
}

impl DocUpdate {
    pub fn check(self) -> Result<CheckedUpdate, UpdateError> {
        let id: RecordId = self
            .id
            .parse()
            .map_err(|_| UpdateError::BadId(self.id.chars().take(40).collect()))?;
        let collection: Collection = self.collection.parse().map_err(|_| {
            UpdateError::UnknownCollection(self.collection.chars().take(40).collect())
        })?;
        if !collection.is_shared() {
            return Err(UpdateError::LocalCollection(collection));
        }
        if self.heads.len() > MAX_HEADS {
            return Err(UpdateError::BadHeads(format!("{} heads", self.heads.len())));
        }
        let heads = self
            .heads
            .iter()
            .map(|h| <[u8; 32]>::try_from(h.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| UpdateError::BadHeads("a head is not 32 bytes".into()))?;
        if self.changes.len() > MAX_CHANGE_BYTES {
            return Err(UpdateError::BadChunks(format!(
                "{} bytes; the limit is {MAX_CHANGE_BYTES}",
                self.changes.len()
            )));
        }
        let signature_only = self.is_signature_only();
        if !signature_only {
            check_automerge_chunks(&self.changes).map_err(UpdateError::BadChunks)?;
        }
        let mut signatures = HashMap::new();
        for ext in &self.extensions {
            if ext.tag == SIGNATURES_EXTENSION {
                for sig in decode_signatures(&ext.data).map_err(UpdateError::BadSignatures)? {
                    signatures.insert(sig.change, sig);
                }
            }
        }
        // A signature-only update names the heads its signatures are of.
        if signature_only && (signatures.is_empty() || heads.is_empty()) {
            return Err(UpdateError::BadChunks(
                "no changes, and no signatures of held ones".into(),
            ));
        }
        Ok(CheckedUpdate {
            id,
            collection,
            heads,
            changes: self.changes,
            signatures,
        })
    }
}

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DEFLATE_BIT: u64 = 0b1000;
const MAX_ACTORS: u64 = 10_000;
const MAX_COLUMNS: u64 = 256;
const MAX_DEPS: u64 = 10_000;

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let n = usize::try_from(n).map_err(|_| "length overflows".to_owned())?;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| format!("{n} bytes declared, {} left", self.bytes.len() - self.pos))?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uleb(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.bytes.get(self.pos).ok_or("truncated number")?;
            self.pos += 1;
            value |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("number longer than 64 bits".into())
    }

    fn count(&mut self, max: u64, what: &str) -> Result<u64, String> {
        let n = self.uleb()?;
        if n > max {
            return Err(format!("{n} {what}; at most {max} allowed"));
        }
        Ok(n)
    }

    /// Column metadata: (spec, length) pairs. Returns the total data length.
    fn columns(&mut self) -> Result<u64, String> {
        let n = self.count(MAX_COLUMNS, "columns")?;
        let mut total = 0u64;
        for _ in 0..n {
            let spec = self.uleb()?;
            let len = self.uleb()?;
            if spec & DEFLATE_BIT != 0 {
                return Err("deflated column (peers must send uncompressed chunks)".into());
            }
            total = total.checked_add(len).ok_or("column lengths overflow")?;
        }
        Ok(total)
    }
}

/// Checks that `bytes` is a sequence of uncompressed Automerge document or
/// change chunks whose declared lengths and counts are within the data and
/// the limits. This is a framing check, not a full parse: Automerge parses
/// afterwards, on a copy, under `catch_unwind`.
pub fn check_automerge_chunks(bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Err("no data".into());
    }
    let mut r = Reader { bytes, pos: 0 };
    while r.pos < bytes.len() {
        if r.take(4)? != MAGIC {
            return Err("not an Automerge chunk (bad magic bytes)".into());
        }
        r.take(4)?; // checksum, verified by Automerge
        let kind = r.take(1)?[0];
        let len = r.uleb()?;
        let body = r.take(len)?;
        let mut c = Reader {
            bytes: body,
            pos: 0,
        };
        match kind {
            0 => {
                let actors = c.count(MAX_ACTORS, "actors")?;
                for _ in 0..actors {
                    let n = c.uleb()?;
                    c.take(n)?;
                }
                let heads = c.count(MAX_HEADS as u64, "heads")?;
                c.take(heads * 32)?;
                let change_data = c.columns()?;
                let ops_data = c.columns()?;
                c.take(change_data)?;
                c.take(ops_data)?;
            }
            1 => {
                let deps = c.count(MAX_DEPS, "dependencies")?;
                c.take(deps * 32)?;
                let actor = c.uleb()?;
                c.take(actor)?;
                c.uleb()?; // seq
                c.uleb()?; // start op
                c.uleb()?; // time (signed LEB; same framing)
                let message = c.uleb()?;
                c.take(message)?;
                let others = c.count(MAX_ACTORS, "actors")?;
                for _ in 0..others {
                    let n = c.uleb()?;
                    c.take(n)?;
                }
                let ops_data = c.columns()?;
                c.take(ops_data)?;
            }
            2 => {
                return Err("compressed change chunk (peers must send uncompressed chunks)".into());
            }
            other => return Err(format!("chunk type {other} is not accepted")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{AutoCommit, ROOT, ReadDoc};

    fn doc_with_text(n: usize) -> AutoCommit {
        let mut d = AutoCommit::new();
        let t = d
            .put_object(ROOT, "t", automerge::ObjType::Text)
            .expect("obj");
        d.splice_text(&t, 0, 0, &"研修".repeat(n)).expect("splice");
        d.commit();
        d
    }

    #[test]
    fn what_yui_sends_passes_the_check() {
        let mut d = doc_with_text(2_000);
        let whole = d.save_nocompress();
        check_automerge_chunks(&whole).expect("document chunk");
        let heads = d.get_heads();
        let t = d.get(ROOT, "t").expect("get").expect("t").1;
        d.splice_text(&t, 0, 0, &"追記".repeat(500))
            .expect("splice");
        d.commit();
        let changes: Vec<u8> = d
            .get_changes(&heads)
            .iter()
            .flat_map(|c| c.raw_bytes().to_vec())
            .collect();
        check_automerge_chunks(&changes).expect("change chunks");
    }

    #[test]
    fn compressed_and_malformed_chunks_are_refused() {
        let mut d = doc_with_text(2_000);
        let compressed = d.save();
        assert!(
            check_automerge_chunks(&compressed).is_err(),
            "save() deflates big columns"
        );
        assert!(check_automerge_chunks(b"").is_err());
        assert!(check_automerge_chunks(b"garbage!garbage!").is_err());
        let whole = d.save_nocompress();
        assert!(
            check_automerge_chunks(&whole[..whole.len() - 1]).is_err(),
            "truncated"
        );
        let mut lying = MAGIC.to_vec();
        lying.extend([0, 0, 0, 0, 0]);
        lying.extend([0xff, 0xff, 0xff, 0xff, 0x0f]); // 4 GiB declared
        assert!(check_automerge_chunks(&lying).is_err());
    }

    #[test]
    fn messages_round_trip_and_limits_hold() {
        let req = SyncRequest {
            version: PROTOCOL_VERSION,
            since: 42,
            pull: true,
            wait_ms: 25_000,
            ..Default::default()
        };
        let bytes = req.encode_to_vec();
        assert!(
            bytes.len() < 16,
            "an idle pull is a few bytes: {}",
            bytes.len()
        );
        assert_eq!(SyncRequest::decode_checked(&bytes), Ok(req));
        let wrong = SyncRequest {
            version: 2,
            ..Default::default()
        };
        assert_eq!(
            SyncRequest::decode_checked(&wrong.encode_to_vec()),
            Err(WireError::Version(2))
        );
        assert!(SyncRequest::decode_checked(b"\xff\xff\xff").is_err());
        let local = DocUpdate {
            id: RecordId::generate(1, [1; 10]).to_string(),
            collection: "workers".into(),
            ..Default::default()
        };
        assert_eq!(
            local.check().map(|_| ()),
            Err(UpdateError::LocalCollection(Collection::Workers))
        );
    }

    #[test]
    fn signature_only_updates_travel_where_an_older_node_ignores_them() {
        let with_changes = DocUpdate {
            id: "a".into(),
            changes: vec![1, 2, 3],
            ..DocUpdate::default()
        };
        let signatures_only = DocUpdate {
            id: "b".into(),
            heads: vec![vec![9; 32]],
            ..DocUpdate::default()
        };
        let plain = SyncResponse {
            version: PROTOCOL_VERSION,
            docs: vec![with_changes.clone()],
            ..SyncResponse::default()
        };
        // Nothing signature-only: the very bytes as before.
        assert_eq!(plain.to_wire(), plain.encode_to_vec());
        let both = SyncResponse {
            docs: vec![with_changes.clone(), signatures_only.clone()],
            ..plain.clone()
        };
        let wire = both.to_wire();
        // An older node decodes the message plainly and skips the extension.
        let older = SyncResponse::decode(wire.as_slice()).expect("decode");
        assert_eq!(older.docs, std::slice::from_ref(&with_changes));
        assert_eq!(older.extensions.len(), 1);
        // A newer one takes them back, after the others.
        let newer = SyncResponse::decode_checked(&wire).expect("decode");
        assert_eq!(newer.docs, both.docs);
        assert!(newer.extensions.is_empty());
        let request = SyncRequest {
            version: PROTOCOL_VERSION,
            push: vec![signatures_only.clone(), with_changes.clone()],
            ..SyncRequest::default()
        };
        let back = SyncRequest::decode_checked(&request.to_wire()).expect("decode");
        assert_eq!(back.push, [with_changes, signatures_only]);
        // An extension that does not decode refuses the message.
        let broken = SyncRequest {
            version: PROTOCOL_VERSION,
            extensions: vec![Extension {
                tag: SIGNATURE_UPDATES_EXTENSION,
                data: vec![0xff; 3],
            }],
            ..SyncRequest::default()
        };
        assert!(SyncRequest::decode_checked(&broken.encode_to_vec()).is_err());
    }

    #[test]
    fn a_signature_only_update_needs_heads_and_signatures() {
        let sig = crate::provenance::ChangeSignature {
            change: ChangeHash([1; 32]),
            signer: crate::provenance::SignerId([2; 32]),
            signature: vec![3; 64],
        };
        let update = |heads: Vec<Vec<u8>>, sigs: &[crate::provenance::ChangeSignature]| DocUpdate {
            id: crate::record::RecordId::generate(1_700_000_000_000, [1; 10]).to_string(),
            collection: "knowledge".into(),
            heads,
            extensions: vec![Extension {
                tag: SIGNATURES_EXTENSION,
                data: crate::provenance::encode_signatures(sigs),
            }],
            ..DocUpdate::default()
        };
        let ok = update(vec![vec![9; 32]], std::slice::from_ref(&sig))
            .check()
            .expect("a signature-only update");
        assert!(ok.changes.is_empty() && ok.signatures.len() == 1);
        for bad in [update(Vec::new(), &[sig]), update(vec![vec![9; 32]], &[])] {
            assert_eq!(bad.check().expect_err("refused").code(), "invalid_changes");
        }
    }
}
