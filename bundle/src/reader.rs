//! The streaming bundle reader: one pass over the archive that enforces every rule of
//! `ferry/1`, checks signatures before it reads any payload, and hashes every payload
//! byte against the manifest.
//!
//! Verification alone writes nothing to disk. Extraction writes only into a staging
//! directory the reader creates itself (mode 0700) and removes again if anything fails.
//! It never follows a link and never writes outside that directory.

use crate::manifest::{FileEntry, Manifest, MANIFEST_PATH, MAX_MANIFEST_SIZE, SIGNATURES_DIR};
use crate::paths::check_path;
use crate::source::{BundleSource, TarStream};
use crate::time::Timestamp;
use crate::{Error, Reporter, Result};
use ferry_keys::{KeyId, Signature, TrustStore};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest embedded signature entry accepted.
const MAX_SIGNATURE_SIZE: u64 = 8 * 1024;
/// Tar blocks after the last entry: GNU tar pads to 20-block records.
const MAX_TRAILER: u64 = 1024 + 10 * 1024;
/// Per-entry allowance for headers (ustar/GNU, long names, PAX) in the byte budget.
const HEADER_ALLOWANCE: u64 = 4 * 512;

/// What the host remembers about bundles it has seen, for expiry and replay checks.
#[derive(Clone, Debug)]
pub struct Freshness {
    /// The current time.
    pub now: Timestamp,
    /// The newest `created` of any bundle this host has seen; guards against a clock
    /// set back to make an expired bundle look fresh.
    pub newest_created_seen: Option<Timestamp>,
    /// Highest sequence applied, per channel.
    pub applied: BTreeMap<String, u64>,
    /// Accept a lower sequence than one already applied (reported as a warning).
    pub allow_replay: bool,
}

impl Freshness {
    /// A host that has seen nothing yet, at time `now`.
    pub fn new(now: Timestamp) -> Freshness {
        Freshness {
            now,
            newest_created_seen: None,
            applied: BTreeMap::new(),
            allow_replay: false,
        }
    }
}

/// What must hold for a bundle to be trusted.
pub struct TrustPolicy<'a> {
    /// The trusted keys.
    pub trust: &'a TrustStore,
    /// How many distinct trusted keys must have signed.
    pub threshold: usize,
    /// Detached signatures given next to the bundle; they count with the embedded ones.
    pub detached: Vec<Signature>,
    /// Expiry and replay state.
    pub freshness: Freshness,
}

impl<'a> TrustPolicy<'a> {
    /// `threshold` of `trust`, no detached signatures, a host that has seen nothing yet.
    pub fn new(trust: &'a TrustStore, threshold: usize) -> TrustPolicy<'a> {
        TrustPolicy {
            trust,
            threshold,
            detached: vec![],
            freshness: Freshness::new(Timestamp::now()),
        }
    }
}

/// How much checking a read does.
pub enum Check<'a> {
    /// Signatures, threshold, freshness, then every payload byte.
    Verify(TrustPolicy<'a>),
    /// Every rule and every payload byte, but no signature trust (for co-signing, where
    /// the signer reviews the manifest and may not trust the first signer).
    IntegrityOnly,
}

/// A signature entry embedded in the bundle.
#[derive(Clone, Debug)]
pub struct EmbeddedSignature {
    /// Entry path, `ferry/signatures/<KEYID>.minisig`.
    pub entry: String,
    /// The parsed signature.
    pub signature: Signature,
}

/// The manifest and signatures as found in a bundle, not verified.
#[derive(Clone, Debug)]
pub struct UnverifiedBundle {
    /// Exact bytes of `ferry/manifest.json` (what signatures cover).
    pub manifest_bytes: Vec<u8>,
    /// Parsed and rule-checked, but not trusted.
    pub manifest: Manifest,
    /// Embedded signatures in archive order.
    pub signatures: Vec<EmbeddedSignature>,
}

/// A manifest whose signatures, freshness and payload have all been checked.
/// Only [`read_bundle`] with [`Check::Verify`] makes one.
#[derive(Clone, Debug)]
pub struct VerifiedManifest {
    manifest: Manifest,
    bytes: Vec<u8>,
}

impl VerifiedManifest {
    /// The exact signed bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl std::ops::Deref for VerifiedManifest {
    type Target = Manifest;
    fn deref(&self) -> &Manifest {
        &self.manifest
    }
}

/// Everything a successful read found out.
#[derive(Clone, Debug)]
pub struct ReadReport {
    /// The manifest as read.
    pub unverified: UnverifiedBundle,
    /// Set when the read verified trust ([`Check::Verify`]).
    pub verified: Option<VerifiedManifest>,
    /// Trusted keys whose valid signatures counted.
    pub signers: Vec<KeyId>,
    /// Signers not in the trust store (ignored).
    pub untrusted: Vec<KeyId>,
    /// Threshold that was required (0 for integrity-only reads).
    pub threshold: usize,
    /// Payload files checked.
    pub files: usize,
    /// Payload bytes hashed.
    pub payload_bytes: u64,
    /// Whether the stream was gzip-compressed.
    pub compressed: bool,
    /// Where the payload was extracted, if it was.
    pub staging: Option<PathBuf>,
    /// Warnings worth showing the operator (replay allowed, and the like).
    pub warnings: Vec<String>,
}

/// Read only the manifest and signature entries; instant even on a huge bundle.
/// Nothing is verified.
pub fn read_manifest(source: &BundleSource) -> Result<UnverifiedBundle> {
    let stream = source.tar_stream()?;
    stream.counters.limit.set(u64::MAX);
    let mut archive = tar::Archive::new(stream);
    let mut entries = archive
        .entries()
        .map_err(|e| Error::format("bundle", e.to_string()))?;
    let mut head = Head::default();
    for entry in entries.by_ref() {
        let mut entry = entry.map_err(|e| tar_error(&head.last_entry, e))?;
        match head.take(&mut entry)? {
            Taken::Consumed => continue,
            Taken::Payload(_) => break,
        }
    }
    head.finish()
}

/// Read the whole bundle in one pass, checking as `check` says; with `staging`, also
/// extract the payload into that new directory (which must not exist yet).
pub fn read_bundle(
    source: &BundleSource,
    check: Check<'_>,
    staging: Option<&Path>,
    reporter: &dyn Reporter,
) -> Result<ReadReport> {
    let mut staging_dir = match staging {
        Some(dir) => Some(Staging::create(dir)?),
        None => None,
    };
    let result = read_inner(source, check, staging_dir.as_mut(), reporter);
    match (result, staging_dir) {
        (Ok(report), Some(dir)) => {
            dir.keep();
            Ok(report)
        }
        (Ok(report), None) => Ok(report),
        (Err(e), Some(dir)) => {
            dir.discard();
            Err(e)
        }
        (Err(e), None) => Err(e),
    }
}

fn read_inner(
    source: &BundleSource,
    check: Check<'_>,
    mut staging: Option<&mut Staging>,
    reporter: &dyn Reporter,
) -> Result<ReadReport> {
    let stream = source.tar_stream()?;
    let counters = stream.counters.clone();
    let compressed = stream.compressed;
    // Until the manifest is known, allow just enough for it and a few signatures.
    counters.limit.set(
        MAX_MANIFEST_SIZE + 64 * (MAX_SIGNATURE_SIZE + HEADER_ALLOWANCE) + 4 * HEADER_ALLOWANCE,
    );
    let mut archive = tar::Archive::new(stream);
    let mut entries = archive
        .entries()
        .map_err(|e| Error::format("bundle", e.to_string()))?;

    // 1. The manifest and the signature entries, before any payload.
    let mut head = Head::default();
    let mut first_payload = None;
    for entry in entries.by_ref() {
        let mut entry = entry.map_err(|e| overflow_or(&counters, &head.last_entry, e))?;
        if let Taken::Payload(path) = head.take(&mut entry)? {
            first_payload = Some((path, entry));
            break;
        }
    }
    let unverified = head.finish()?;
    let manifest = &unverified.manifest;

    // 2. Trust: a threshold of distinct trusted keys, each signature's trusted comment
    //    naming this manifest, then expiry and replay. Nothing of the payload is read
    //    before this has passed.
    let mut report = ReadReport {
        unverified: unverified.clone(),
        verified: None,
        signers: vec![],
        untrusted: vec![],
        threshold: 0,
        files: 0,
        payload_bytes: 0,
        compressed,
        staging: None,
        warnings: vec![],
    };
    let trusted = match &check {
        Check::Verify(policy) => {
            check_trust(&unverified, policy, &mut report)?;
            true
        }
        Check::IntegrityOnly => false,
    };

    // 3. The byte budget: the rest of the stream may hold the payload, its headers and
    //    the end-of-archive blocks, nothing more.
    let budget = manifest.files.iter().fold(counters.pos.get(), |acc, f| {
        acc.saturating_add(HEADER_ALLOWANCE)
            .saturating_add(f.size.div_ceil(512) * 512)
    });
    counters.limit.set(
        budget
            .saturating_add(HEADER_ALLOWANCE)
            .saturating_add(MAX_TRAILER),
    );

    // 4. Every payload entry, in manifest order, hashed as it streams.
    let total = manifest.payload_size();
    let mut index = 0usize;
    let mut seen = BTreeSet::new();
    let mut done_bytes = 0u64;
    let mut pending = first_payload;
    loop {
        let (path, mut entry) = match pending.take() {
            Some(p) => p,
            None => match entries.next() {
                None => break,
                Some(entry) => {
                    let mut entry =
                        entry.map_err(|e| overflow_or(&counters, &head.last_entry, e))?;
                    match classify(&mut entry)? {
                        Kind::Directory(path) => {
                            head.last_entry = path;
                            head.note_end(&entry);
                            continue;
                        }
                        Kind::File(path) => (path, entry),
                    }
                }
            },
        };
        head.last_entry = path.clone();
        head.note_end(&entry);
        let expected = expect_entry(manifest, index, &path, &seen)?;
        seen.insert(path.clone());
        check_entry_shape(&mut entry, &path, expected)?;
        let mut sink = match staging.as_deref_mut() {
            Some(s) => Some(s.create_file(expected)?),
            None => None,
        };
        let digest = hash_entry(&mut entry, expected, sink.as_mut(), &counters, |n| {
            done_bytes += n;
            reporter.progress("verifying", done_bytes, total);
        })?;
        if digest != expected.sha256 {
            return Err(Error::format(
                &path,
                format!(
                    "sha256 mismatch: manifest says {}, content is {digest}\nhelp: the bundle was corrupted or tampered with; copy it again from the original media",
                    expected.sha256
                ),
            ));
        }
        if let Some(file) = sink {
            file.sync_all().map_err(|e| Error::io(&path, e))?;
        }
        index += 1;
    }
    if let Some(missing) = manifest.files.get(index) {
        return Err(Error::format(
            &missing.path,
            format!(
                "listed in the manifest but missing from the archive ({} of {} files present)\nhelp: the bundle is truncated or incomplete; copy it again",
                index,
                manifest.files.len()
            ),
        ));
    }

    // 5. After the last entry: only end-of-archive zero blocks, then nothing.
    let zeros_read = counters.pos.get().saturating_sub(head.end);
    let mut rest = archive.into_inner();
    check_trailer(&mut rest, zeros_read, &head.last_entry)?;

    report.files = index;
    report.payload_bytes = done_bytes;
    if trusted {
        report.verified = Some(VerifiedManifest {
            manifest: unverified.manifest.clone(),
            bytes: unverified.manifest_bytes.clone(),
        });
    }
    report.staging = staging.map(|s| s.root.clone());
    Ok(report)
}

fn check_trust(
    bundle: &UnverifiedBundle,
    policy: &TrustPolicy<'_>,
    report: &mut ReadReport,
) -> Result<()> {
    let manifest = &bundle.manifest;
    let mut all: Vec<Signature> = bundle
        .signatures
        .iter()
        .map(|s| s.signature.clone())
        .collect();
    all.extend(policy.detached.iter().cloned());
    if all.is_empty() {
        return Err(Error::format(
            MANIFEST_PATH,
            "the bundle carries no signature and none was given with --signature\nhelp: bundles must be signed by ferry-build; a co-signature can be passed with --signature FILE",
        ));
    }
    let threshold = policy
        .trust
        .check_threshold(&all, &bundle.manifest_bytes, policy.threshold)
        // Any signature failure is reported against the manifest entry it covers.
        .map_err(|e| Error::format(MANIFEST_PATH, e.to_string()))?;
    let expected = manifest.trusted_comment();
    for sig in &all {
        if policy.trust.get(&sig.key_id()).is_some() && sig.trusted_comment() != expected {
            return Err(Error::TrustedComment {
                key_id: sig.key_id().to_string(),
                expected,
                found: sig.trusted_comment().to_string(),
            });
        }
    }
    let fresh = &policy.freshness;
    let now = fresh
        .newest_created_seen
        .map_or(fresh.now, |seen| seen.max(fresh.now));
    if manifest.expires <= now {
        return Err(Error::Expired {
            name: manifest.name.clone(),
            expires: manifest.expires.to_string(),
            now: now.to_string(),
        });
    }
    if let Some(&applied) = fresh.applied.get(&manifest.channel) {
        if manifest.sequence < applied {
            if fresh.allow_replay {
                report.warnings.push(format!(
                    "REPLAY ALLOWED: sequence {} is lower than {applied}, already applied for channel {}",
                    manifest.sequence, manifest.channel
                ));
            } else {
                return Err(Error::Replayed {
                    name: manifest.name.clone(),
                    channel: manifest.channel.clone(),
                    sequence: manifest.sequence,
                    applied,
                });
            }
        }
    }
    report.signers = threshold.valid;
    report.untrusted = threshold.untrusted;
    report.threshold = threshold.threshold;
    Ok(())
}

/// Which manifest file the entry at `index` must be, with a precise complaint if not.
fn expect_entry<'m>(
    manifest: &'m Manifest,
    index: usize,
    path: &str,
    seen: &BTreeSet<String>,
) -> Result<&'m FileEntry> {
    if path == MANIFEST_PATH || path.starts_with(SIGNATURES_DIR) {
        return Err(Error::format(
            path,
            "found after the payload started; the manifest and signatures must come first",
        ));
    }
    if seen.contains(path) {
        return Err(Error::format(path, "duplicate entry"));
    }
    match manifest.files.get(index) {
        Some(f) if f.path == path => Ok(f),
        Some(f) => match manifest.files.iter().position(|g| g.path == path) {
            Some(pos) => Err(Error::format(
                path,
                format!(
                    "entry out of order: expected {} (files[{index}]) here, found files[{pos}]",
                    f.path
                ),
            )),
            None => Err(Error::format(path, "path is not listed in the manifest")),
        },
        None => Err(Error::format(
            path,
            "extra entry after every file in the manifest was read (not listed in the manifest)",
        )),
    }
}

fn check_entry_shape<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    path: &str,
    expected: &FileEntry,
) -> Result<()> {
    let mode = entry
        .header()
        .mode()
        .map_err(|e| Error::format(path, e.to_string()))?
        & 0o7777;
    if mode != expected.mode_bits() {
        return Err(Error::format(
            path,
            format!(
                "mode is {mode:04o} in the archive but {} in the manifest",
                expected.mode
            ),
        ));
    }
    if entry.size() != expected.size {
        return Err(Error::format(
            path,
            format!(
                "size mismatch: manifest says {} bytes, archive entry holds {}\nhelp: the bundle was corrupted or tampered with; copy it again from the original media",
                expected.size,
                entry.size()
            ),
        ));
    }
    Ok(())
}

fn hash_entry<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    expected: &FileEntry,
    mut sink: Option<&mut File>,
    counters: &crate::source::Counters,
    mut progress: impl FnMut(u64),
) -> Result<String> {
    let path = &expected.path;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0u64;
    loop {
        let n = match entry.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(overflow_or(counters, path, e)),
        };
        hasher.update(&buf[..n]);
        if let Some(file) = sink.as_mut() {
            file.write_all(&buf[..n]).map_err(|e| Error::io(path, e))?;
        }
        read += n as u64;
        progress(n as u64);
    }
    if read != expected.size {
        return Err(Error::format(
            path,
            format!(
                "payload ends after {read} of {} bytes: the bundle is truncated\nhelp: copy the bundle (every part) again",
                expected.size
            ),
        ));
    }
    Ok(hex::encode(hasher.finalize()))
}

fn check_trailer(rest: &mut TarStream, zeros_read: u64, last: &str) -> Result<()> {
    // The parser stopped at the first zero block (or at EOF). Everything that follows
    // must be zeros: two blocks at least, no more than a tar record's padding.
    let mut trailing = zeros_read;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match rest.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if rest.counters.overflowed.get() {
                    return Err(Error::format(
                        "bundle",
                        "trailing data after the end of the archive (more bytes than the manifest accounts for)",
                    ));
                }
                return Err(stream_error(last, e));
            }
        };
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(Error::format(
                "bundle",
                "trailing garbage after the end of the archive",
            ));
        }
        trailing += n as u64;
        if trailing > MAX_TRAILER {
            return Err(Error::format(
                "bundle",
                "the archive holds more bytes than the manifest accounts for (more than a tar record of padding after its end)",
            ));
        }
    }
    if trailing < 1024 {
        return Err(Error::format(
            "bundle",
            "the end-of-archive blocks are missing: the bundle is truncated\nhelp: copy the bundle (every part) again",
        ));
    }
    Ok(())
}

enum Kind {
    Directory(String),
    File(String),
}

/// Check the entry's type, path, mode bits and ownership; directories are allowed and
/// ignored, every other non-regular type is refused.
fn classify<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Kind> {
    let raw = entry.path_bytes().into_owned();
    let name = String::from_utf8(raw)
        .map_err(|e| Error::format(String::from_utf8_lossy(e.as_bytes()), "path is not UTF-8"))?;
    let header = entry.header();
    let kind = header.entry_type();
    let is_dir = kind.is_dir();
    let path = if is_dir {
        name.trim_end_matches('/').to_string()
    } else {
        name.clone()
    };
    if let Err(why) = check_path(&path) {
        return Err(Error::format(&name, why));
    }
    let what = match kind {
        tar::EntryType::Regular | tar::EntryType::Directory => None,
        tar::EntryType::Symlink => Some("a symlink"),
        tar::EntryType::Link => Some("a hardlink"),
        tar::EntryType::Char => Some("a character device"),
        tar::EntryType::Block => Some("a block device"),
        tar::EntryType::Fifo => Some("a FIFO"),
        tar::EntryType::GNUSparse => Some("a GNU sparse file"),
        tar::EntryType::XGlobalHeader => Some("a PAX global header"),
        _ => Some("an entry of an unsupported type"),
    };
    if let Some(what) = what {
        return Err(Error::format(
            &path,
            format!("is {what}; bundles contain only regular files (and directories)"),
        ));
    }
    let mode = header
        .mode()
        .map_err(|e| Error::format(&path, e.to_string()))?;
    if mode & 0o6000 != 0 {
        return Err(Error::format(
            &path,
            format!("has the setuid or setgid bit set (mode {mode:o}); bundles never carry them"),
        ));
    }
    let uid = header
        .uid()
        .map_err(|e| Error::format(&path, e.to_string()))?;
    let gid = header
        .gid()
        .map_err(|e| Error::format(&path, e.to_string()))?;
    if uid != 0 || gid != 0 {
        return Err(Error::format(
            &path,
            format!("owner is {uid}:{gid}; bundle entries are owned by 0:0"),
        ));
    }
    // A PAX size that disagrees with the header size lets two parsers see two archives.
    let ustar_size = header
        .entry_size()
        .map_err(|e| Error::format(&path, e.to_string()))?;
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| Error::format(&path, e.to_string()))?
    {
        for ext in exts {
            let ext = ext.map_err(|e| Error::format(&path, e.to_string()))?;
            if ext.key_bytes() == b"size" {
                let pax: Option<u64> = ext.value().ok().and_then(|v| v.parse().ok());
                if pax != Some(ustar_size) {
                    return Err(Error::format(
                        &path,
                        format!(
                            "PAX size header ({}) disagrees with the ustar size ({ustar_size})",
                            String::from_utf8_lossy(ext.value_bytes())
                        ),
                    ));
                }
            }
        }
    }
    Ok(if is_dir {
        Kind::Directory(path)
    } else {
        Kind::File(path)
    })
}

enum Taken {
    Consumed,
    Payload(String),
}

/// Collects the manifest and the signature entries at the head of the archive.
#[derive(Default)]
struct Head {
    manifest: Option<Vec<u8>>,
    signatures: Vec<EmbeddedSignature>,
    names: BTreeSet<String>,
    last_entry: String,
    /// Stream offset just past the data (and padding) of the last entry seen.
    end: u64,
}

impl Head {
    fn note_end<R: Read>(&mut self, entry: &tar::Entry<'_, R>) {
        self.end = entry.raw_file_position() + entry.size().div_ceil(512) * 512;
    }

    fn take<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<Taken> {
        self.note_end(entry);
        let path = match classify(entry)? {
            Kind::Directory(_) => return Ok(Taken::Consumed),
            Kind::File(path) => path,
        };
        self.last_entry = path.clone();
        if self.manifest.is_none() {
            if path != MANIFEST_PATH {
                return Err(Error::format(
                    &path,
                    format!("the first entry must be {MANIFEST_PATH}; is this a ferry bundle?"),
                ));
            }
            if entry.size() > MAX_MANIFEST_SIZE {
                return Err(Error::format(
                    &path,
                    format!(
                        "manifest is {} bytes, larger than the {MAX_MANIFEST_SIZE}-byte limit",
                        entry.size()
                    ),
                ));
            }
            self.manifest = Some(read_small(entry, &path)?);
            return Ok(Taken::Consumed);
        }
        if path == MANIFEST_PATH {
            return Err(Error::format(&path, "duplicate entry"));
        }
        let Some(file_name) = path.strip_prefix(SIGNATURES_DIR) else {
            return Ok(Taken::Payload(path));
        };
        if !self.names.insert(path.clone()) {
            return Err(Error::format(&path, "duplicate entry"));
        }
        let key_name = file_name.strip_suffix(".minisig").unwrap_or("");
        let valid_name = key_name.len() == 16
            && key_name
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c));
        if !valid_name {
            return Err(Error::format(
                &path,
                "signature entries are named ferry/signatures/<KEYID>.minisig with a 16-digit upper-case hex key id",
            ));
        }
        if entry.size() > MAX_SIGNATURE_SIZE {
            return Err(Error::format(
                &path,
                format!(
                    "signature entry is {} bytes; at most {MAX_SIGNATURE_SIZE}",
                    entry.size()
                ),
            ));
        }
        let bytes = read_small(entry, &path)?;
        let text = String::from_utf8(bytes)
            .map_err(|_| Error::format(&path, "signature is not UTF-8 text"))?;
        let signature = Signature::parse(&text).map_err(|e| Error::format(&path, e.to_string()))?;
        if signature.key_id().to_string() != key_name {
            return Err(Error::format(
                &path,
                format!(
                    "entry is named for key {key_name} but the signature is by key {}",
                    signature.key_id()
                ),
            ));
        }
        self.signatures.push(EmbeddedSignature {
            entry: path,
            signature,
        });
        Ok(Taken::Consumed)
    }

    fn finish(&self) -> Result<UnverifiedBundle> {
        let Some(bytes) = self.manifest.clone() else {
            return Err(Error::format(
                MANIFEST_PATH,
                "missing: the archive is empty or not a ferry bundle",
            ));
        };
        let manifest = Manifest::parse(&bytes)?;
        Ok(UnverifiedBundle {
            manifest_bytes: bytes,
            manifest,
            signatures: self.signatures.clone(),
        })
    }
}

fn read_small<R: Read>(entry: &mut tar::Entry<'_, R>, path: &str) -> Result<Vec<u8>> {
    let size = entry.size();
    let mut bytes = Vec::with_capacity(size as usize);
    entry
        .read_to_end(&mut bytes)
        .map_err(|e| stream_error(path, e))?;
    if bytes.len() as u64 != size {
        return Err(Error::format(
            path,
            format!(
                "entry ends after {} of {size} bytes: the bundle is truncated",
                bytes.len()
            ),
        ));
    }
    Ok(bytes)
}

fn overflow_or(counters: &crate::source::Counters, entry: &str, e: io::Error) -> Error {
    if counters.overflowed.get() {
        let name = if entry.is_empty() { "bundle" } else { entry };
        Error::format(
            name,
            "the archive holds more bytes than the manifest accounts for (decompression bomb or appended data)",
        )
    } else {
        stream_error(entry, e)
    }
}

fn tar_error(last: &str, e: io::Error) -> Error {
    stream_error(last, e)
}

fn stream_error(entry: &str, e: io::Error) -> Error {
    let at = if entry.is_empty() {
        "bundle".to_string()
    } else {
        format!("bundle (at or after entry {entry})")
    };
    let reason = match e.kind() {
        io::ErrorKind::UnexpectedEof => {
            "unexpected end of data: the bundle is truncated\nhelp: copy the bundle (every part) again".to_string()
        }
        _ => format!("unreadable archive data: {e}\nhelp: the bundle is corrupted or not a ferry bundle; copy it again"),
    };
    Error::format(at, reason)
}

/// The staging directory: created fresh with mode 0700, removed if the read fails.
struct Staging {
    root: PathBuf,
    keep: bool,
}

impl Staging {
    fn create(dir: &Path) -> Result<Staging> {
        DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io(dir, e))?;
        Ok(Staging {
            root: dir.to_path_buf(),
            keep: false,
        })
    }

    fn create_file(&mut self, entry: &FileEntry) -> Result<File> {
        // Paths were checked (no "..", no empty or absolute segments) and every directory
        // below the root is one this function made, so nothing here can be a link.
        let target = self.root.join(&entry.path);
        let mut dir = self.root.clone();
        let segments: Vec<&str> = entry.path.split('/').collect();
        for seg in &segments[..segments.len() - 1] {
            dir.push(seg);
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let meta = std::fs::symlink_metadata(&dir).map_err(|e| Error::io(&dir, e))?;
                    if !meta.is_dir() {
                        return Err(Error::format(
                            &entry.path,
                            format!("{} exists in staging and is not a directory", dir.display()),
                        ));
                    }
                }
                Err(e) => return Err(Error::io(&dir, e)),
            }
        }
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(entry.mode_bits())
            .custom_flags(libc_o_nofollow())
            .open(&target)
            .map_err(|e| Error::io(&target, e))
    }

    fn keep(mut self) {
        self.keep = true;
    }

    fn discard(self) {}
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// `O_NOFOLLOW` on Linux, without pulling in libc for one constant.
fn libc_o_nofollow() -> i32 {
    0o400000
}
