//! Forging tar archives entry by entry, with full control of every header field, so tests
//! can build exactly the hostile bundles the reader must refuse.

use ferry_bundle::{FileEntry, Manifest};
use ferry_keys::{SecretKey, Signature};
use sha2::{Digest, Sha256};
use std::io::Write;

/// One raw tar entry.
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// Path written into the header (ustar name/prefix or GNU long name).
    pub path: String,
    /// Content.
    pub data: Vec<u8>,
    /// Type flag: b'0' regular, b'2' symlink, b'1' hardlink, b'3' char, b'4' block, b'5' dir, b'6' FIFO.
    pub kind: u8,
    /// Permission bits (may include setuid).
    pub mode: u32,
    /// Owner.
    pub uid: u64,
    /// Group.
    pub gid: u64,
    /// Header size different from the data length (data is still written in full).
    pub header_size: Option<u64>,
    /// PAX records written in an `x` entry before this one.
    pub pax: Vec<(String, String)>,
    /// Link target for links.
    pub link: Option<String>,
}

impl RawEntry {
    /// A regular file.
    pub fn file(path: &str, data: &[u8]) -> RawEntry {
        RawEntry {
            path: path.into(),
            data: data.to_vec(),
            kind: b'0',
            mode: 0o644,
            uid: 0,
            gid: 0,
            header_size: None,
            pax: vec![],
            link: None,
        }
    }
}

/// A tar archive under construction.
#[derive(Clone, Debug, Default)]
pub struct Forge {
    /// Entries in order.
    pub entries: Vec<RawEntry>,
    /// Bytes appended after the end-of-archive blocks.
    pub trailer: Vec<u8>,
    /// Omit the end-of-archive blocks.
    pub no_end_blocks: bool,
}

impl Forge {
    /// The archive bytes.
    pub fn tar(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for e in &self.entries {
            if !e.pax.is_empty() {
                let mut body = Vec::new();
                for (k, v) in &e.pax {
                    let rest = format!(" {k}={v}\n");
                    let mut len = rest.len() + 1;
                    while format!("{len}{rest}").len() != len {
                        len += 1;
                    }
                    body.extend_from_slice(format!("{len}{rest}").as_bytes());
                }
                write_entry(
                    &mut out,
                    "PaxHeaders/x",
                    b'x',
                    0o644,
                    0,
                    0,
                    body.len() as u64,
                    &body,
                    None,
                );
            }
            let size = e.header_size.unwrap_or(e.data.len() as u64);
            write_entry(
                &mut out,
                &e.path,
                e.kind,
                e.mode,
                e.uid,
                e.gid,
                size,
                &e.data,
                e.link.as_deref(),
            );
        }
        if !self.no_end_blocks {
            out.extend_from_slice(&[0u8; 1024]);
        }
        out.extend_from_slice(&self.trailer);
        out
    }

    /// The archive gzip-compressed.
    pub fn tar_gz(&self) -> Vec<u8> {
        gzip(&self.tar())
    }

    /// Index of the entry with this path.
    pub fn index(&self, path: &str) -> usize {
        self.entries
            .iter()
            .position(|e| e.path == path)
            .unwrap_or_else(|| panic!("no entry {path}"))
    }
}

/// gzip bytes.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

#[allow(clippy::too_many_arguments)]
fn write_entry(
    out: &mut Vec<u8>,
    path: &str,
    kind: u8,
    mode: u32,
    uid: u64,
    gid: u64,
    size: u64,
    data: &[u8],
    link: Option<&str>,
) {
    let mut h = tar::Header::new_ustar();
    if path.len() <= 100 {
        // Raw name bytes: `set_path` would normalise "a/./b" or refuse "..", and hostile
        // tests need exactly those names in the archive.
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
    } else {
        h.set_path(path).expect("long test path");
    }
    h.set_entry_type(tar::EntryType::new(kind));
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(0);
    h.set_size(size);
    if let Some(link) = link {
        h.set_link_name(link).unwrap();
    }
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    let pad = (512 - data.len() % 512) % 512;
    out.extend(std::iter::repeat_n(0u8, pad));
}

/// A signed bundle's ingredients, kept apart so tests can change any of them.
pub struct Fixture {
    /// The signing key.
    pub key: SecretKey,
    /// Payload files: (path, content).
    pub files: Vec<(String, Vec<u8>)>,
    /// The manifest.
    pub manifest: Manifest,
}

impl Fixture {
    /// Three small payload files, a fresh key, a manifest valid for 90 days from now.
    pub fn new() -> Fixture {
        let files = vec![
            ("debs/demo_1.0_all.deb".to_string(), crate::noise(1500, 1)),
            (
                "files/config.txt".to_string(),
                b"listen_port = 8080\n".to_vec(),
            ),
            (
                "files/plugins/plugin.so".to_string(),
                crate::noise(70_000, 2),
            ),
        ];
        let manifest = Manifest {
            channel: "test/bookworm-amd64".into(),
            sequence: 100,
            builder: "ferry-tests".into(),
            files: files.iter().map(|(p, d)| entry(p, d)).collect(),
            ..crate::bundle::manifest("hostile-1")
        };
        Fixture {
            key: SecretKey::generate(),
            files,
            manifest,
        }
    }

    /// The manifest bytes.
    pub fn manifest_json(&self) -> Vec<u8> {
        self.manifest.to_json()
    }

    /// A signature over the current manifest by `key` (the fixture's own by default).
    pub fn sign_with(&self, key: &SecretKey) -> Signature {
        key.sign(
            &self.manifest_json(),
            &self.manifest.trusted_comment(),
            "test signature",
        )
        .unwrap()
    }

    /// A valid archive: manifest, signature, payload.
    pub fn forge(&self) -> Forge {
        let sig = self.sign_with(&self.key);
        let mut entries = vec![
            RawEntry::file("ferry/manifest.json", &self.manifest_json()),
            RawEntry::file(
                &format!("ferry/signatures/{}.minisig", sig.key_id()),
                sig.to_file_string().as_bytes(),
            ),
        ];
        for (p, d) in &self.files {
            entries.push(RawEntry::file(p, d));
        }
        Forge {
            entries,
            ..Forge::default()
        }
    }

    /// The `.pub` text of the fixture's key.
    pub fn public_key_file(&self) -> String {
        self.key.public_key().to_file_string()
    }
}

impl Default for Fixture {
    fn default() -> Self {
        Fixture::new()
    }
}

/// A manifest file entry for content.
pub fn entry(path: &str, data: &[u8]) -> FileEntry {
    FileEntry {
        path: path.into(),
        size: data.len() as u64,
        sha256: hex::encode(Sha256::digest(data)),
        mode: "0644".into(),
    }
}
