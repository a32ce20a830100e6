//! Minisign public keys: parsing, writing and loading `.pub` files.
//!
//! Format: `untrusted comment: minisign public key <KEYID>\n` then
//! `base64(b"Ed" || keynum[8] || ed25519_pk[32])\n`. A key that is not a valid Ed25519
//! point, or is a small-order ("weak") point, is rejected at parse time: strict
//! verification could never accept a signature from it anyway.

use std::fmt;
use std::path::Path;

use ed25519_dalek::VerifyingKey;

use crate::text::{self, malformed};
use crate::{Error, KeyId};

/// Algorithm tag of public and secret keys (Ed25519).
pub(crate) const KEY_ALG: [u8; 2] = *b"Ed";
/// The first line of every minisign file starts with this.
pub(crate) const UNTRUSTED_PREFIX: &str = "untrusted comment: ";
const PUBLIC_KEY_BYTES: usize = 2 + 8 + 32;
const WHAT: &str = "public key";

/// A minisign Ed25519 public key with its key id.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    keynum: [u8; 8],
    key: VerifyingKey,
}

impl PublicKey {
    pub(crate) fn from_parts(keynum: [u8; 8], key: VerifyingKey) -> PublicKey {
        PublicKey { keynum, key }
    }

    /// The key id (minisign's key number).
    pub fn id(&self) -> KeyId {
        KeyId(self.keynum)
    }

    /// The raw 32-byte Ed25519 public key.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    pub(crate) fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Parses the contents of a minisign `.pub` file, or the bare base64 line that
    /// `minisign -P` takes.
    pub fn parse(text: &str) -> Result<PublicKey, Error> {
        parse(text, None)
    }

    /// Like [`PublicKey::parse`], naming `origin` (a path, an archive entry) in errors.
    pub fn parse_from(text: &str, origin: &str) -> Result<PublicKey, Error> {
        parse(text, Some(origin.to_owned()))
    }

    /// Reads and parses a `.pub` file; errors name the path.
    pub fn load(path: &Path) -> Result<PublicKey, Error> {
        let text = text::read_file(path, WHAT)?;
        parse(&text, Some(path.display().to_string()))
    }

    /// The base64 line of the key file (what `minisign -P` takes).
    pub fn to_base64(&self) -> String {
        let mut bytes = [0u8; PUBLIC_KEY_BYTES];
        bytes[..2].copy_from_slice(&KEY_ALG);
        bytes[2..10].copy_from_slice(&self.keynum);
        bytes[10..].copy_from_slice(self.key.as_bytes());
        text::encode(&bytes)
    }

    /// The text of a minisign `.pub` file for this key, as `minisign -G` writes it.
    pub fn to_file_string(&self) -> String {
        format!(
            "{UNTRUSTED_PREFIX}minisign public key {}\n{}\n",
            self.id(),
            self.to_base64()
        )
    }

    /// Writes the `.pub` file to `path` (mode 0644), refusing to overwrite a file.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        text::write_new_file(path, self.to_file_string().as_bytes(), 0o644)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("id", &format_args!("{}", self.id()))
            .field("key", &format_args!("{}", self.to_base64()))
            .finish()
    }
}

fn parse(text: &str, origin: Option<String>) -> Result<PublicKey, Error> {
    let fail = |reason: String| malformed(WHAT, origin.clone(), reason);
    let lines = text::split_lines(text).map_err(fail)?;
    let (line, line_no) = match lines.as_slice() {
        [bare] if !bare.starts_with(UNTRUSTED_PREFIX) => (*bare, 1),
        [comment, key] => {
            if !comment.starts_with(UNTRUSTED_PREFIX) {
                return Err(fail(format!("line 1 must start with {UNTRUSTED_PREFIX:?}")));
            }
            (*key, 2)
        }
        _ => {
            return Err(fail(format!(
                "expected 2 lines (an untrusted comment and the key), found {}",
                lines.len()
            )))
        }
    };
    let bytes: [u8; PUBLIC_KEY_BYTES] = text::decode_fixed(line, line_no).map_err(fail)?;
    if bytes[..2] != KEY_ALG {
        return Err(fail(format!(
            "line {line_no}: unsupported signature algorithm (expected Ed25519, \"Ed\")"
        )));
    }
    let keynum: [u8; 8] = bytes[2..10].try_into().expect("8 bytes");
    let pk: [u8; 32] = bytes[10..].try_into().expect("32 bytes");
    let key = VerifyingKey::from_bytes(&pk)
        .map_err(|_| fail(format!("line {line_no}: not a valid Ed25519 public key")))?;
    if key.is_weak() {
        return Err(fail(format!(
            "line {line_no}: weak (small-order) Ed25519 public key"
        )));
    }
    Ok(PublicKey { keynum, key })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Written by `minisign -G -W` (minisign 0.11).
    const MINISIGN_PUB: &str = "untrusted comment: minisign public key AB2E69C80764BD79\n\
                                RWR5vWQHyGkuq0HKVbxxja5QA4t4QBjRAgjjujhCvXqF3IXuiuDglb3n\n";

    #[test]
    fn parses_minisign_file_and_writes_it_back_byte_for_byte() {
        let key = PublicKey::parse(MINISIGN_PUB).unwrap();
        assert_eq!(key.id().to_string(), "AB2E69C80764BD79");
        assert_eq!(key.to_file_string(), MINISIGN_PUB);
    }

    #[test]
    fn parses_bare_base64_and_crlf() {
        let bare =
            PublicKey::parse("RWR5vWQHyGkuq0HKVbxxja5QA4t4QBjRAgjjujhCvXqF3IXuiuDglb3n").unwrap();
        let crlf = PublicKey::parse(&MINISIGN_PUB.replace('\n', "\r\n")).unwrap();
        assert_eq!(bare, crlf);
        assert_eq!(bare.id().to_string(), "AB2E69C80764BD79");
    }

    #[test]
    fn rejects_malformed_files_naming_the_origin() {
        let line2 = MINISIGN_PUB.lines().nth(1).unwrap();
        let cases = [
            (format!("{MINISIGN_PUB}extra\n"), "found 3"),
            (format!("comment: x\n{line2}\n"), "line 1 must start with"),
            (MINISIGN_PUB.replace("RWR5", "RWR*"), "invalid base64"),
            (
                MINISIGN_PUB.replace("RWR5", "RUR5"),
                "unsupported signature algorithm",
            ),
            (
                format!("untrusted comment: x\n{}\n", &line2[..40]),
                "expected 42 bytes",
            ),
        ];
        for (text, expected) in cases {
            let err = PublicKey::parse_from(&text, "trusted/a.pub")
                .unwrap_err()
                .to_string();
            assert!(
                err.starts_with("malformed public key in trusted/a.pub: "),
                "{err}"
            );
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
    }

    #[test]
    fn rejects_weak_key() {
        // The identity point is small-order.
        let mut bytes = [0u8; 42];
        bytes[..2].copy_from_slice(b"Ed");
        bytes[10] = 1;
        let err = PublicKey::parse(&text::encode(&bytes))
            .unwrap_err()
            .to_string();
        assert!(err.contains("weak"), "{err}");
    }

    #[test]
    fn load_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.pub");
        let err = PublicKey::load(&path).unwrap_err();
        assert_eq!(err.to_string(), format!("cannot read {}", path.display()));
    }

    #[test]
    fn save_writes_file_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pub");
        let key = PublicKey::parse(MINISIGN_PUB).unwrap();
        key.save(&path).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), MINISIGN_PUB);
        let err = key.save(&path).unwrap_err();
        assert!(err.to_string().starts_with("cannot create"), "{err}");
        assert_eq!(PublicKey::load(&path).unwrap(), key);
    }
}
