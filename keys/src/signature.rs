//! Minisign signatures (`.minisig`): creating, parsing, writing and verifying.
//!
//! Format, four lines:
//! 1. `untrusted comment: <text>`
//! 2. `base64(b"ED" || keynum[8] || Ed25519(BLAKE2b-512(message))[64])`
//! 3. `trusted comment: <text>`
//! 4. `base64(Ed25519(sig[64] || trusted comment bytes))` — the "global" signature that
//!    binds the trusted comment.
//!
//! Only prehashed (`ED`) signatures are accepted; legacy `Ed` ones are refused. Both
//! Ed25519 checks use `verify_strict`, and any failure is reported as one opaque
//! [`Error::VerificationFailed`] that never says which check failed.

use std::fmt;
use std::path::Path;

use blake2::{Blake2b512, Digest};
use ed25519_dalek::{Signer, SigningKey};

use crate::public::UNTRUSTED_PREFIX;
use crate::text::{self, malformed};
use crate::{Error, KeyId, PublicKey};

const WHAT: &str = "signature";
const TRUSTED_PREFIX: &str = "trusted comment: ";
const SIG_ALG_PREHASHED: [u8; 2] = *b"ED";
const SIG_ALG_LEGACY: [u8; 2] = *b"Ed";
const SIG_BYTES: usize = 2 + 8 + 64;
/// minisign reads the first line into 1024 bytes (prefix, comment, `\n`, NUL).
pub const MAX_UNTRUSTED_COMMENT: usize = 1024 - UNTRUSTED_PREFIX.len() - 2;
/// minisign reads the trusted comment line into 8192 bytes (prefix, comment, `\n`, NUL).
pub const MAX_TRUSTED_COMMENT: usize = 8192 - TRUSTED_PREFIX.len() - 2;

/// A parsed minisign signature with its comments.
#[derive(Clone, PartialEq, Eq)]
pub struct Signature {
    keynum: [u8; 8],
    sig: [u8; 64],
    untrusted_comment: String,
    trusted_comment: String,
    global_sig: [u8; 64],
}

impl Signature {
    pub(crate) fn create(
        signing: &SigningKey,
        keynum: [u8; 8],
        message: &[u8],
        trusted_comment: &str,
        untrusted_comment: &str,
    ) -> Result<Signature, Error> {
        check_comment("trusted", trusted_comment, MAX_TRUSTED_COMMENT)?;
        check_comment("untrusted", untrusted_comment, MAX_UNTRUSTED_COMMENT)?;
        let sig = signing.sign(&Blake2b512::digest(message)).to_bytes();
        let global_sig = signing
            .sign(&global_message(&sig, trusted_comment))
            .to_bytes();
        Ok(Signature {
            keynum,
            sig,
            untrusted_comment: untrusted_comment.to_owned(),
            trusted_comment: trusted_comment.to_owned(),
            global_sig,
        })
    }

    /// Parses the text of a `.minisig` file.
    pub fn parse(text: &str) -> Result<Signature, Error> {
        parse(text, None)
    }

    /// Like [`Signature::parse`], naming `origin` (a path, an archive entry) in errors.
    pub fn parse_from(text: &str, origin: &str) -> Result<Signature, Error> {
        parse(text, Some(origin.to_owned()))
    }

    /// Reads and parses a `.minisig` file; errors name the path.
    pub fn load(path: &Path) -> Result<Signature, Error> {
        let text = text::read_file(path, WHAT)?;
        parse(&text, Some(path.display().to_string()))
    }

    /// The id of the key that (claims to have) made this signature.
    pub fn key_id(&self) -> KeyId {
        KeyId(self.keynum)
    }

    /// The trusted comment (covered by the signature once [`Signature::verify`] passes).
    pub fn trusted_comment(&self) -> &str {
        &self.trusted_comment
    }

    /// The untrusted comment (not covered by any signature).
    pub fn untrusted_comment(&self) -> &str {
        &self.untrusted_comment
    }

    /// The exact `.minisig` file text, as minisign writes it, ending in `\n`.
    pub fn to_file_string(&self) -> String {
        let mut sig = [0u8; SIG_BYTES];
        sig[..2].copy_from_slice(&SIG_ALG_PREHASHED);
        sig[2..10].copy_from_slice(&self.keynum);
        sig[10..].copy_from_slice(&self.sig);
        format!(
            "{UNTRUSTED_PREFIX}{}\n{}\n{TRUSTED_PREFIX}{}\n{}\n",
            self.untrusted_comment,
            text::encode(&sig),
            self.trusted_comment,
            text::encode(&self.global_sig),
        )
    }

    /// Verifies this signature over `message` and its trusted comment with `key`.
    ///
    /// [`Error::KeyMismatch`] if `key` has another key id; otherwise any failure is the
    /// opaque [`Error::VerificationFailed`].
    pub fn verify(&self, key: &PublicKey, message: &[u8]) -> Result<(), Error> {
        let key_id = self.key_id();
        // 1. The signature must name this key.
        if key.id() != key_id {
            return Err(Error::KeyMismatch {
                signature_key_id: key_id,
                public_key_id: key.id(),
            });
        }
        let failed = |_| Error::VerificationFailed { key_id };
        let vk = key.verifying_key();
        // 2. The signature over the message's BLAKE2b-512 hash.
        let sig = ed25519_dalek::Signature::from_bytes(&self.sig);
        vk.verify_strict(&Blake2b512::digest(message), &sig)
            .map_err(failed)?;
        // 3. The global signature binding the trusted comment to that signature.
        let global_sig = ed25519_dalek::Signature::from_bytes(&self.global_sig);
        vk.verify_strict(
            &global_message(&self.sig, &self.trusted_comment),
            &global_sig,
        )
        .map_err(failed)?;
        Ok(())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signature")
            .field("key_id", &format_args!("{}", self.key_id()))
            .field("trusted_comment", &self.trusted_comment)
            .field("untrusted_comment", &self.untrusted_comment)
            .finish_non_exhaustive()
    }
}

fn global_message(sig: &[u8; 64], trusted_comment: &str) -> Vec<u8> {
    let mut msg = Vec::with_capacity(sig.len() + trusted_comment.len());
    msg.extend_from_slice(sig);
    msg.extend_from_slice(trusted_comment.as_bytes());
    msg
}

fn check_comment(which: &'static str, comment: &str, max: usize) -> Result<(), Error> {
    let reason = if comment.contains(['\n', '\r']) {
        "it contains a line break".to_owned()
    } else if comment.contains('\0') {
        "it contains a NUL byte".to_owned()
    } else if comment.len() > max {
        format!(
            "it is {} bytes long; minisign accepts at most {max}",
            comment.len()
        )
    } else {
        return Ok(());
    };
    Err(Error::InvalidComment { which, reason })
}

fn parse(text: &str, origin: Option<String>) -> Result<Signature, Error> {
    let fail = |reason: String| malformed(WHAT, origin.clone(), reason);
    let lines = text::split_lines(text).map_err(fail)?;
    let [line1, line2, line3, line4] = lines.as_slice() else {
        return Err(fail(format!(
            "expected 4 lines (untrusted comment, signature, trusted comment, global \
             signature), found {}",
            lines.len()
        )));
    };
    let untrusted_comment = line1
        .strip_prefix(UNTRUSTED_PREFIX)
        .ok_or_else(|| fail(format!("line 1 must start with {UNTRUSTED_PREFIX:?}")))?;
    if untrusted_comment.len() > MAX_UNTRUSTED_COMMENT {
        return Err(fail(format!(
            "line 1: untrusted comment longer than minisign's {MAX_UNTRUSTED_COMMENT} bytes"
        )));
    }
    let bytes: [u8; SIG_BYTES] = text::decode_fixed(line2, 2).map_err(fail)?;
    if bytes[..2] == SIG_ALG_LEGACY {
        return Err(Error::LegacySignature { origin });
    }
    if bytes[..2] != SIG_ALG_PREHASHED {
        return Err(fail(
            "line 2: unsupported signature algorithm (expected prehashed Ed25519, \"ED\")"
                .to_owned(),
        ));
    }
    let trusted_comment = line3
        .strip_prefix(TRUSTED_PREFIX)
        .ok_or_else(|| fail(format!("line 3 must start with {TRUSTED_PREFIX:?}")))?;
    if trusted_comment.len() > MAX_TRUSTED_COMMENT {
        return Err(fail(format!(
            "line 3: trusted comment longer than minisign's {MAX_TRUSTED_COMMENT} bytes"
        )));
    }
    let global_sig: [u8; 64] = text::decode_fixed(line4, 4).map_err(fail)?;
    Ok(Signature {
        keynum: bytes[2..10].try_into().expect("8 bytes"),
        sig: bytes[10..].try_into().expect("64 bytes"),
        untrusted_comment: untrusted_comment.to_owned(),
        trusted_comment: trusted_comment.to_owned(),
        global_sig,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SecretKey;

    const MESSAGE: &[u8] = b"{\"format\":\"ferry/1\"}\n";
    const TRUSTED: &str = "ferry/1 name=tyk channel=tyk/focal sequence=1";

    /// Made by `minisign -S -s k.key -m msg -c "my untrusted" -t "my trusted"` over
    /// "hello\n" with the key in `public.rs`'s tests (minisign 0.11).
    const MINISIGN_SIG: &str = "untrusted comment: my untrusted\n\
        RUR5vWQHyGkuq6qOFBeBTfESq3jeEVfXSXVSELgLr1FUcWA3FjKTnXXbEWcK9qcHWE7zl62p0vN2BYeMr3vgagCETosH8jlKEgU=\n\
        trusted comment: my trusted\n\
        e4PbiQQcsidTOsPpRcIAICQgAos4ocIBl9hKJt/3W6Gw51ZVy2D5eFp1tJwo7ixyNCKFr3v0oEnuQHPIf0h7Cg==\n";
    const MINISIGN_PUB: &str = "RWR5vWQHyGkuq0HKVbxxja5QA4t4QBjRAgjjujhCvXqF3IXuiuDglb3n";
    /// The same key and message signed with `minisign -S -l` (legacy).
    const MINISIGN_LEGACY_SIG: &str = "untrusted comment: signature from minisign secret key\n\
        RWR5vWQHyGkuq6JsNyBME3LoMUdzaUnpXPZIC/SGsuAOajx9SY8XyuuENu6ayhSSrAgposlnE+rYa1ox2jwxyhaYcEAWnYY8JAU=\n\
        trusted comment: timestamp:1795300686\tfile:msg\n\
        JLCsZOjU2PT0/E/EJZHQZGDHLdjsiYhdY3A2QXhUS2D689RIPQugOWmAPyd9UUe89Q2vqLqGwVmnvLdyGZxQDQ==\n";

    fn signed() -> (SecretKey, Signature) {
        let key = SecretKey::generate();
        let sig = key.sign(MESSAGE, TRUSTED, "signature from ferry").unwrap();
        (key, sig)
    }

    fn opaque(key: &SecretKey) -> String {
        format!("signature verification failed for key {}", key.id())
    }

    #[test]
    fn sign_verify_and_text_round_trip() {
        let (key, sig) = signed();
        sig.verify(&key.public_key(), MESSAGE).unwrap();
        assert_eq!(sig.key_id(), key.id());
        assert_eq!(sig.trusted_comment(), TRUSTED);
        let text = sig.to_file_string();
        assert!(text.starts_with("untrusted comment: signature from ferry\nRU"));
        assert!(text.ends_with("==\n"));
        assert_eq!(
            text.lines().nth(2).unwrap(),
            format!("trusted comment: {TRUSTED}")
        );
        let back = Signature::parse(&text).unwrap();
        assert_eq!(back, sig);
        assert_eq!(back.to_file_string(), text);
        back.verify(&key.public_key(), MESSAGE).unwrap();
        // CRLF and a missing final newline are tolerated.
        let crlf = Signature::parse(&text.replace('\n', "\r\n")).unwrap();
        assert_eq!(crlf, sig);
        assert_eq!(Signature::parse(text.trim_end()).unwrap(), sig);
    }

    #[test]
    fn verifies_a_minisign_signature_and_writes_it_back_exactly() {
        let key = PublicKey::parse(MINISIGN_PUB).unwrap();
        let sig = Signature::parse(MINISIGN_SIG).unwrap();
        sig.verify(&key, b"hello\n").unwrap();
        assert_eq!(sig.trusted_comment(), "my trusted");
        assert_eq!(sig.to_file_string(), MINISIGN_SIG);
    }

    #[test]
    fn tampered_message_signature_or_comment_fail_opaquely() {
        let (key, sig) = signed();
        let pk = key.public_key();
        let text = sig.to_file_string();

        let err = sig.verify(&pk, b"{\"format\":\"ferry/2\"}\n").unwrap_err();
        assert_eq!(err.to_string(), opaque(&key));

        // Flip one bit of the signature (line 2) and of the global signature (line 4).
        for line_no in [1, 3] {
            let lines: Vec<&str> = text.lines().collect();
            let mut bytes = text::decode_vec(lines[line_no], 0).unwrap().to_vec();
            *bytes.last_mut().unwrap() ^= 0x01;
            let mut lines: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
            lines[line_no] = text::encode(&bytes);
            let tampered = Signature::parse(&(lines.join("\n") + "\n")).unwrap();
            let err = tampered.verify(&pk, MESSAGE).unwrap_err();
            assert!(matches!(err, Error::VerificationFailed { .. }));
            assert_eq!(err.to_string(), opaque(&key));
        }

        let forged_comment = text.replace("sequence=1", "sequence=9");
        let tampered = Signature::parse(&forged_comment).unwrap();
        let err = tampered.verify(&pk, MESSAGE).unwrap_err();
        assert_eq!(err.to_string(), opaque(&key));

        // The untrusted comment is not signed.
        let relabelled = text.replace("signature from ferry", "anything");
        Signature::parse(&relabelled)
            .unwrap()
            .verify(&pk, MESSAGE)
            .unwrap();
    }

    #[test]
    fn wrong_key_is_a_key_mismatch() {
        let (_, sig) = signed();
        let other = SecretKey::generate();
        let err = sig.verify(&other.public_key(), MESSAGE).unwrap_err();
        assert!(matches!(err, Error::KeyMismatch { .. }), "{err}");
        assert!(err.is_verification_failure());
    }

    #[test]
    fn same_key_id_with_other_key_bytes_fails_opaquely() {
        let (key, sig) = signed();
        let impostor = SecretKey::generate().public_key();
        let impostor = PublicKey::from_parts(key.id().0, *impostor.verifying_key());
        let err = sig.verify(&impostor, MESSAGE).unwrap_err();
        assert_eq!(err.to_string(), opaque(&key));
    }

    #[test]
    fn legacy_signature_is_refused() {
        let err = Signature::parse_from(MINISIGN_LEGACY_SIG, "msg.minisig").unwrap_err();
        assert!(matches!(err, Error::LegacySignature { .. }), "{err}");
        assert!(err.to_string().starts_with(
            "legacy (non-prehashed) minisign signature in msg.minisig is not accepted\nhelp: "
        ));
    }

    #[test]
    fn malformed_signatures_name_the_source() {
        let (_, sig) = signed();
        let text = sig.to_file_string();
        let lines: Vec<&str> = text.lines().collect();
        let cases = [
            (lines[..3].join("\n"), "found 3"),
            (format!("{text}\n"), "found 5"),
            (
                text.replacen("untrusted comment: ", "comment: ", 1),
                "line 1 must start",
            ),
            (
                text.replacen("trusted comment: ferry", "trusted: ferry", 1),
                "line 3 must start",
            ),
            (
                text.replacen(lines[1], &format!("*{}", &lines[1][1..]), 1),
                "line 2: invalid base64",
            ),
            (text.replacen(lines[3], &lines[3][4..], 1), "line 4: "),
            (
                text.replacen(lines[1], &text::encode(&[b'E'; 74]), 1),
                "unsupported signature algorithm",
            ),
            (
                text.replacen("ferry/1 ", "ferry/1\r", 1),
                "stray carriage return",
            ),
        ];
        for (bad, expected) in cases {
            let err = Signature::parse_from(&bad, "ferry/signatures/X.minisig").unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.starts_with("malformed signature in ferry/signatures/X.minisig: "),
                "{msg}"
            );
            assert!(msg.contains(expected), "{msg} should contain {expected}");
            assert!(err.is_verification_failure());
        }
    }

    #[test]
    fn comments_minisign_cannot_carry_are_refused() {
        let key = SecretKey::generate();
        for (trusted, untrusted, which) in [
            ("a\nb", "u", "trusted"),
            ("a\rb", "u", "trusted"),
            ("a\0b", "u", "trusted"),
            ("t", "two\nlines", "untrusted"),
        ] {
            match key.sign(MESSAGE, trusted, untrusted).unwrap_err() {
                Error::InvalidComment { which: w, .. } => assert_eq!(w, which),
                other => panic!("unexpected {other}"),
            }
        }
        let longest = "x".repeat(MAX_TRUSTED_COMMENT);
        let sig = key.sign(MESSAGE, &longest, "u").unwrap();
        Signature::parse(&sig.to_file_string()).unwrap();
        let err = key.sign(MESSAGE, &format!("{longest}x"), "u").unwrap_err();
        assert!(err.to_string().contains("at most 8173"), "{err}");
        assert!(key
            .sign(MESSAGE, "t", &"u".repeat(MAX_UNTRUSTED_COMMENT + 1))
            .is_err());
    }

    #[test]
    fn empty_message_and_empty_trusted_comment_work() {
        let key = SecretKey::generate();
        let sig = key.sign(b"", "", "").unwrap();
        let back = Signature::parse(&sig.to_file_string()).unwrap();
        back.verify(&key.public_key(), b"").unwrap();
        assert_eq!(back.trusted_comment(), "");
    }
}
