//! The crate's single error type.
//!
//! Messages name the file (or other source) and key id involved and end with a `help:`
//! line where there is an obvious next step. They must never contain secret material:
//! no passphrase, no decoded secret-key bytes, not even a character of a secret-key
//! file's base64 (which is why base64 errors are reported without their details).
//! Cryptographic failures collapse into the single opaque [`Error::VerificationFailed`].

use std::path::PathBuf;

use crate::KeyId;

/// Everything that can go wrong in `ferry-keys`.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done: "read", "create", "write", "list".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// Text that is not a well-formed minisign public key, secret key or signature.
    #[error("malformed {what}{}: {reason}", in_origin(origin))]
    Malformed {
        /// "public key", "secret key" or "signature".
        what: &'static str,
        /// The file (or other source) the text came from, when known.
        origin: Option<String>,
        /// What is wrong, without quoting any of the input.
        reason: String,
    },

    /// A legacy (`Ed`, non-prehashed) minisign signature, which ferry refuses.
    #[error(
        "legacy (non-prehashed) minisign signature{} is not accepted\n\
         help: sign again with minisign 0.11 or later without `-l`, or with `ferry-build sign`",
        in_origin(origin)
    )]
    LegacySignature {
        /// The file (or other source) the signature came from, when known.
        origin: Option<String>,
    },

    /// The secret key is encrypted and no passphrase was given.
    #[error(
        "secret key{} is encrypted and needs a passphrase\n\
         help: set FERRY_PASSPHRASE or run from a terminal to be prompted",
        spaced(origin)
    )]
    PassphraseRequired {
        /// The secret key file, when known.
        origin: Option<String>,
    },

    /// The passphrase does not decrypt the secret key (its checksum does not match).
    #[error(
        "wrong passphrase for secret key{}\n\
         help: check the passphrase (FERRY_PASSPHRASE or the prompt); if it is right, the key \
         file is corrupted",
        spaced(origin)
    )]
    WrongPassphrase {
        /// The secret key file, when known.
        origin: Option<String>,
    },

    /// An empty passphrase was given to encrypt a secret key.
    #[error(
        "refusing to encrypt a secret key with an empty passphrase\n\
         help: choose a passphrase, or create the key without one (--no-passphrase)"
    )]
    EmptyPassphrase,

    /// A secret key's scrypt limits are outside what ferry accepts.
    #[error(
        "secret key{} asks for scrypt limits ferry does not accept: opslimit {opslimit} \
         (at most {max_opslimit}), memlimit {memlimit} bytes (at most {max_memlimit})\n\
         help: re-encrypt the key with minisign's default settings (`minisign -C -s FILE`)",
        spaced(origin)
    )]
    KdfLimits {
        /// The secret key file, when known.
        origin: Option<String>,
        /// The file's `kdf_opslimit`.
        opslimit: u64,
        /// The file's `kdf_memlimit` in bytes.
        memlimit: u64,
        /// The largest accepted opslimit.
        max_opslimit: u64,
        /// The largest accepted memlimit in bytes.
        max_memlimit: u64,
    },

    /// A comment passed to [`SecretKey::sign`](crate::SecretKey::sign) cannot be written
    /// in a minisign signature.
    #[error("invalid {which} comment for a signature: {reason}")]
    InvalidComment {
        /// "trusted" or "untrusted".
        which: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// A signature was checked against a public key with a different key id.
    #[error(
        "signature was made by key {signature_key_id}, not by public key {public_key_id}\n\
         help: verify it with the public key {signature_key_id}"
    )]
    KeyMismatch {
        /// The key id recorded in the signature.
        signature_key_id: KeyId,
        /// The key id of the public key it was checked against.
        public_key_id: KeyId,
    },

    /// A signature did not verify. Deliberately says nothing about which check failed.
    #[error("signature verification failed for key {key_id}")]
    VerificationFailed {
        /// The key the signature claims to be from.
        key_id: KeyId,
    },

    /// A trust store directory holds no `*.pub` file.
    #[error(
        "no trusted keys in {}\n\
         help: copy the signer's .pub file into {}, or pass --trust FILE",
        path.display(), path.display()
    )]
    NoTrustedKeys {
        /// The directory.
        path: PathBuf,
    },

    /// Two trust store files hold different keys with the same key id.
    #[error(
        "conflicting trusted keys with key id {key_id}: {} and {} hold different keys\n\
         help: remove the file you do not trust",
        first.display(), second.display()
    )]
    ConflictingKeys {
        /// The shared key id.
        key_id: KeyId,
        /// The file read first.
        first: PathBuf,
        /// The file read second.
        second: PathBuf,
    },

    /// A threshold of 0 was requested.
    #[error(
        "invalid signature threshold 0: at least one trusted signature is required\n\
         help: pass --threshold 1 or more"
    )]
    ZeroThreshold,

    /// The threshold is larger than the number of trusted keys, so it can never be met.
    #[error(
        "signature threshold {threshold} exceeds the {trusted} trusted key(s) in the trust store\n\
         help: add more trusted .pub files or lower --threshold"
    )]
    ThresholdTooHigh {
        /// The requested threshold.
        threshold: usize,
        /// How many keys the trust store holds.
        trusted: usize,
    },

    /// Fewer distinct trusted keys signed than the threshold requires.
    #[error("{}", threshold_message(*.required, .valid, .untrusted))]
    ThresholdNotMet {
        /// The threshold.
        required: usize,
        /// Trusted keys whose signatures verified, each once.
        valid: Vec<KeyId>,
        /// Keys that signed but are not in the trust store, each once.
        untrusted: Vec<KeyId>,
        /// Trusted keys that signed more than once (counted once).
        duplicates: Vec<KeyId>,
    },

    /// A string that is not a key id.
    #[error("invalid key id {input:?}: expected 16 hexadecimal digits, as minisign prints")]
    InvalidKeyId {
        /// The offending input.
        input: String,
    },
}

impl Error {
    /// True for errors that mean "this signature must not be trusted" (bad, forged,
    /// legacy or malformed signature, wrong key, threshold not met), which the binaries
    /// report with exit code 3; false for I/O, usage and secret-key problems.
    pub fn is_verification_failure(&self) -> bool {
        match self {
            Error::VerificationFailed { .. }
            | Error::KeyMismatch { .. }
            | Error::LegacySignature { .. }
            | Error::ThresholdNotMet { .. } => true,
            Error::Malformed { what, .. } => *what == "signature",
            _ => false,
        }
    }
}

fn in_origin(origin: &Option<String>) -> String {
    origin
        .as_deref()
        .map(|o| format!(" in {o}"))
        .unwrap_or_default()
}

fn spaced(origin: &Option<String>) -> String {
    origin
        .as_deref()
        .map(|o| format!(" {o}"))
        .unwrap_or_default()
}

fn join(ids: &[KeyId]) -> String {
    if ids.is_empty() {
        return "none".to_owned();
    }
    ids.iter()
        .map(KeyId::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn threshold_message(required: usize, valid: &[KeyId], untrusted: &[KeyId]) -> String {
    let mut msg = format!(
        "signature threshold not met: {} of {required} required trusted key(s) signed \
         (valid: {}; untrusted signers: {})",
        valid.len(),
        join(valid),
        join(untrusted),
    );
    if untrusted.is_empty() {
        msg.push_str(
            "\nhelp: have more trusted keys co-sign (`ferry-build sign`) and pass their \
             signatures with --signature",
        );
    } else {
        msg.push_str(&format!(
            "\nhelp: if you trust {}, add the signer's .pub to /etc/ferry/trusted/ or pass --trust",
            join(untrusted)
        ));
    }
    msg
}
