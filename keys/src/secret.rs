//! Minisign secret keys: generation, the (optionally scrypt-encrypted) `.key` file
//! format, and signing.
//!
//! File format: `untrusted comment: minisign encrypted secret key\n` (minisign writes
//! that comment even for unencrypted keys) then base64 of 158 bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 0..2 | `sig_alg` = `Ed` |
//! | 2..4 | `kdf_alg` = `Sc` (scrypt) or `\0\0` (unencrypted) |
//! | 4..6 | `chk_alg` = `B2` (BLAKE2b-256) |
//! | 6..38 | scrypt salt |
//! | 38..46 | `kdf_opslimit`, u64 LE |
//! | 46..54 | `kdf_memlimit`, u64 LE |
//! | 54..158 | `keynum[8] || ed25519 seed+pk[64] || chk[32]`, XORed with scrypt output when encrypted |
//!
//! `chk = BLAKE2b-256(sig_alg || keynum || sk64)` detects a wrong passphrase. For an
//! unencrypted key `minisign -G -W` leaves salt, limits and `chk` zeroed and never
//! checks `chk`; ferry reads such keys, but writes a real checksum (as `minisign -C -W`
//! leaves one) so a corrupted file is caught. Every loaded key must also have matching
//! secret and public halves.
//!
//! Secrets live in [`ed25519_dalek::SigningKey`] (zeroized on drop) and in `Zeroizing`
//! buffers; nothing here ever puts key bytes, passphrases or secret-key text into an
//! error or `Debug` output. Limitation: the `scrypt` crate's own working memory (up to
//! the file's memlimit) is freed without being zeroized.

use std::fmt;
use std::ops::Range;
use std::path::Path;

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use ed25519_dalek::SigningKey;
use rand_core::{OsRng, RngCore};
use zeroize::Zeroizing;

use crate::public::{KEY_ALG, UNTRUSTED_PREFIX};
use crate::text::{self, malformed};
use crate::{Error, KeyId, PublicKey, Signature};

const WHAT: &str = "secret key";
const SECRET_KEY_COMMENT: &str = "minisign encrypted secret key";
const KDF_SCRYPT: [u8; 2] = *b"Sc";
const KDF_NONE: [u8; 2] = [0, 0];
const CHK_ALG: [u8; 2] = *b"B2";

const SECRET_KEY_BYTES: usize = 158;
const KDF_ALG: Range<usize> = 2..4;
const CHK_ALG_AT: Range<usize> = 4..6;
const SALT: Range<usize> = 6..38;
const OPSLIMIT: Range<usize> = 38..46;
const MEMLIMIT: Range<usize> = 46..54;
/// The part XORed with the scrypt stream when encrypted.
const KEYNUM_SK: Range<usize> = 54..158;
const KEYNUM: Range<usize> = 54..62;
const SEED: Range<usize> = 62..94;
const SK64: Range<usize> = 62..126;
const PK: Range<usize> = 94..126;
const CHK: Range<usize> = 126..158;

/// scrypt cost limits as stored in a minisign secret key (libsodium's
/// `crypto_pwhash_scryptsalsa208sha256` opslimit and memlimit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KdfLimits {
    /// libsodium opslimit.
    pub opslimit: u64,
    /// libsodium memlimit, in bytes.
    pub memlimit: u64,
}

impl KdfLimits {
    /// minisign's defaults (libsodium "sensitive"): scrypt N=2^20, r=8, p=1, 1 GiB.
    pub const MINISIGN_DEFAULT: KdfLimits = KdfLimits {
        opslimit: 33_554_432,
        memlimit: 1_073_741_824,
    };
    /// libsodium's "interactive" limits (N=2^14, 16 MiB): for tests only, never for
    /// keys that protect real bundles.
    pub const INTERACTIVE: KdfLimits = KdfLimits {
        opslimit: 524_288,
        memlimit: 16_777_216,
    };
    /// Largest opslimit ferry honours (libsodium's own maximum).
    pub const MAX_OPSLIMIT: u64 = 4_294_967_295;
    /// Largest memlimit ferry honours: 4 GiB.
    pub const MAX_MEMLIMIT: u64 = 4 << 30;

    /// scrypt `(log2 N, r, p)` for these limits, as libsodium's `pickparams` computes
    /// them (minisign derives the key stream through libsodium).
    pub fn scrypt_params(&self) -> (u8, u32, u32) {
        fn log2_n(max_n: u64) -> u8 {
            let mut log_n = 1u8;
            while log_n < 63 && (1u64 << log_n) <= max_n / 2 {
                log_n += 1;
            }
            log_n
        }
        let opslimit = self.opslimit.max(32_768);
        let r: u32 = 8;
        if opslimit < self.memlimit / 32 {
            let log_n = log2_n(opslimit / (u64::from(r) * 4));
            (log_n, r, 1)
        } else {
            let log_n = log2_n(self.memlimit / (u64::from(r) * 128));
            let maxrp = ((opslimit / 4) >> log_n).min(0x3fff_ffff);
            (log_n, r, maxrp as u32 / r)
        }
    }

    fn checked_params(&self, origin: &Option<String>) -> Result<scrypt::Params, Error> {
        let refuse = || Error::KdfLimits {
            origin: origin.clone(),
            opslimit: self.opslimit,
            memlimit: self.memlimit,
            max_opslimit: Self::MAX_OPSLIMIT,
            max_memlimit: Self::MAX_MEMLIMIT,
        };
        if self.opslimit > Self::MAX_OPSLIMIT || self.memlimit > Self::MAX_MEMLIMIT {
            return Err(refuse());
        }
        let (log_n, r, p) = self.scrypt_params();
        // The last argument is the PHC output length, unused by `scrypt::scrypt`.
        scrypt::Params::new(log_n, r, p, 32).map_err(|_| refuse())
    }
}

/// A minisign Ed25519 secret key with its key id. Zeroized on drop.
pub struct SecretKey {
    keynum: [u8; 8],
    signing: SigningKey,
}

impl SecretKey {
    /// Generates a new key pair and a random key id from the operating system's RNG.
    pub fn generate() -> SecretKey {
        let signing = SigningKey::generate(&mut OsRng);
        let mut keynum = [0u8; 8];
        OsRng.fill_bytes(&mut keynum);
        SecretKey { keynum, signing }
    }

    /// The key id (minisign's key number).
    pub fn id(&self) -> KeyId {
        KeyId(self.keynum)
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_parts(self.keynum, self.signing.verifying_key())
    }

    /// The text of a minisign `.key` file: encrypted with `passphrase` using minisign's
    /// default scrypt limits (about 1 GiB and a few seconds), or unencrypted for `None`.
    pub fn to_file_string(&self, passphrase: Option<&str>) -> Result<Zeroizing<String>, Error> {
        match passphrase {
            Some(passphrase) => {
                self.to_file_string_with_limits(passphrase, KdfLimits::MINISIGN_DEFAULT)
            }
            None => self.encode(None),
        }
    }

    /// Like [`SecretKey::to_file_string`] with a passphrase, but with explicit scrypt
    /// limits (within [`KdfLimits::MAX_OPSLIMIT`] and [`KdfLimits::MAX_MEMLIMIT`]).
    pub fn to_file_string_with_limits(
        &self,
        passphrase: &str,
        limits: KdfLimits,
    ) -> Result<Zeroizing<String>, Error> {
        self.encode(Some((passphrase, limits)))
    }

    fn encode(&self, kdf: Option<(&str, KdfLimits)>) -> Result<Zeroizing<String>, Error> {
        let mut payload = Zeroizing::new([0u8; SECRET_KEY_BYTES]);
        payload[..2].copy_from_slice(&KEY_ALG);
        payload[CHK_ALG_AT].copy_from_slice(&CHK_ALG);
        payload[KEYNUM].copy_from_slice(&self.keynum);
        payload[SEED].copy_from_slice(self.signing.as_bytes());
        payload[PK].copy_from_slice(self.signing.verifying_key().as_bytes());
        let chk = checksum(&payload);
        payload[CHK].copy_from_slice(&chk[..]);
        if let Some((passphrase, limits)) = kdf {
            if passphrase.is_empty() {
                return Err(Error::EmptyPassphrase);
            }
            let params = limits.checked_params(&None)?;
            payload[KDF_ALG].copy_from_slice(&KDF_SCRYPT);
            OsRng.fill_bytes(&mut payload[SALT]);
            payload[OPSLIMIT].copy_from_slice(&limits.opslimit.to_le_bytes());
            payload[MEMLIMIT].copy_from_slice(&limits.memlimit.to_le_bytes());
            let stream = key_stream(passphrase, &payload[SALT], &params);
            xor(&mut payload[KEYNUM_SK], &stream[..]);
        }
        // Encode into buffers sized up front so no reallocation leaves a copy behind.
        let mut b64 = Zeroizing::new(vec![0u8; text::encoded_len(SECRET_KEY_BYTES)]);
        let written = text::encode_slice(&payload[..], &mut b64);
        debug_assert_eq!(written, b64.len());
        let b64 = std::str::from_utf8(&b64).expect("base64 is ASCII");
        let mut out = Zeroizing::new(String::with_capacity(
            UNTRUSTED_PREFIX.len() + SECRET_KEY_COMMENT.len() + b64.len() + 2,
        ));
        out.push_str(UNTRUSTED_PREFIX);
        out.push_str(SECRET_KEY_COMMENT);
        out.push('\n');
        out.push_str(b64);
        out.push('\n');
        Ok(out)
    }

    /// Parses a minisign `.key` file. An encrypted key needs `passphrase`
    /// ([`Error::PassphraseRequired`] otherwise); for an unencrypted key it is ignored.
    pub fn parse(text: &str, passphrase: Option<&str>) -> Result<SecretKey, Error> {
        parse(text, passphrase, None)
    }

    /// Like [`SecretKey::parse`], naming `origin` (usually the path) in errors.
    pub fn parse_from(
        text: &str,
        passphrase: Option<&str>,
        origin: &str,
    ) -> Result<SecretKey, Error> {
        parse(text, passphrase, Some(origin.to_owned()))
    }

    /// Whether a `.key` file's text is passphrase-protected (checks its format too).
    pub fn is_encrypted(text: &str) -> Result<bool, Error> {
        Ok(decode_payload(text, &None)?[KDF_ALG] == KDF_SCRYPT)
    }

    /// Reads and parses a `.key` file; errors name the path.
    pub fn load(path: &Path, passphrase: Option<&str>) -> Result<SecretKey, Error> {
        let text = text::read_file(path, WHAT)?;
        parse(&text, passphrase, Some(path.display().to_string()))
    }

    /// Writes the `.key` file to `path` with mode 0600, refusing to overwrite a file.
    /// See [`SecretKey::to_file_string`] for `passphrase`.
    pub fn save(&self, path: &Path, passphrase: Option<&str>) -> Result<(), Error> {
        let text = self.to_file_string(passphrase)?;
        text::write_new_file(path, text.as_bytes(), 0o600)
    }

    /// Signs `message` in minisign's prehashed (`ED`) format.
    ///
    /// Fails with [`Error::InvalidComment`] if a comment contains a line break, `\r` or
    /// NUL, or is longer than minisign accepts (trusted: 8173 bytes, untrusted: 1003).
    pub fn sign(
        &self,
        message: &[u8],
        trusted_comment: &str,
        untrusted_comment: &str,
    ) -> Result<Signature, Error> {
        Signature::create(
            &self.signing,
            self.keynum,
            message,
            trusted_comment,
            untrusted_comment,
        )
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("id", &format_args!("{}", self.id()))
            .finish_non_exhaustive()
    }
}

/// Checks the text's structure and algorithms and returns the raw (maybe encrypted)
/// 158-byte payload.
fn decode_payload(
    text: &str,
    origin: &Option<String>,
) -> Result<Zeroizing<[u8; SECRET_KEY_BYTES]>, Error> {
    let fail = |reason: String| malformed(WHAT, origin.clone(), reason);
    let lines = text::split_lines(text).map_err(fail)?;
    let [comment, line] = lines.as_slice() else {
        return Err(fail(format!(
            "expected 2 lines (an untrusted comment and the key), found {}",
            lines.len()
        )));
    };
    if !comment.starts_with(UNTRUSTED_PREFIX) {
        return Err(fail(format!("line 1 must start with {UNTRUSTED_PREFIX:?}")));
    }
    let bytes = text::decode_vec(line, 2).map_err(fail)?;
    if bytes.len() != SECRET_KEY_BYTES {
        return Err(fail(text::wrong_length(2, SECRET_KEY_BYTES, bytes.len())));
    }
    let mut payload = Zeroizing::new([0u8; SECRET_KEY_BYTES]);
    payload.copy_from_slice(&bytes);
    if payload[..2] != KEY_ALG {
        return Err(fail(
            "unsupported signature algorithm (expected Ed25519, \"Ed\")".to_owned(),
        ));
    }
    if payload[CHK_ALG_AT] != CHK_ALG {
        return Err(fail(
            "unsupported checksum algorithm (expected BLAKE2b, \"B2\")".to_owned(),
        ));
    }
    if payload[KDF_ALG] != KDF_SCRYPT && payload[KDF_ALG] != KDF_NONE {
        return Err(fail(
            "unsupported key derivation algorithm (expected scrypt, \"Sc\", or none)".to_owned(),
        ));
    }
    Ok(payload)
}

fn parse(text: &str, passphrase: Option<&str>, origin: Option<String>) -> Result<SecretKey, Error> {
    let mut payload = decode_payload(text, &origin)?;
    let encrypted = payload[KDF_ALG] == KDF_SCRYPT;
    if encrypted {
        let passphrase = passphrase.ok_or_else(|| Error::PassphraseRequired {
            origin: origin.clone(),
        })?;
        let limits = KdfLimits {
            opslimit: u64::from_le_bytes(payload[OPSLIMIT].try_into().expect("8 bytes")),
            memlimit: u64::from_le_bytes(payload[MEMLIMIT].try_into().expect("8 bytes")),
        };
        let params = limits.checked_params(&origin)?;
        let stream = key_stream(passphrase, &payload[SALT], &params);
        xor(&mut payload[KEYNUM_SK], &stream[..]);
    }
    let chk = checksum(&payload);
    if !ct_eq(&chk[..], &payload[CHK]) {
        if encrypted {
            return Err(Error::WrongPassphrase { origin });
        }
        // `minisign -G -W` leaves the checksum of unencrypted keys zeroed.
        if payload[CHK].iter().any(|&b| b != 0) {
            return Err(malformed(
                WHAT,
                origin,
                "checksum mismatch: the key file is corrupted",
            ));
        }
    }
    let sk64: &[u8; 64] = payload[SK64].try_into().expect("64 bytes");
    let signing = SigningKey::from_keypair_bytes(sk64).map_err(|_| {
        malformed(
            WHAT,
            origin.clone(),
            "its secret and public halves do not match: the key file is corrupted",
        )
    })?;
    let keynum = payload[KEYNUM].try_into().expect("8 bytes");
    Ok(SecretKey { keynum, signing })
}

/// `chk = BLAKE2b-256(sig_alg || keynum || sk64)` over a decrypted payload.
fn checksum(payload: &[u8; SECRET_KEY_BYTES]) -> Zeroizing<[u8; 32]> {
    let mut hasher = Blake2b::<U32>::new();
    hasher.update(&payload[..2]);
    hasher.update(&payload[KEYNUM]);
    hasher.update(&payload[SK64]);
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&hasher.finalize());
    out
}

/// The 104-byte scrypt stream XORed over `keynum || sk64 || chk`.
fn key_stream(passphrase: &str, salt: &[u8], params: &scrypt::Params) -> Zeroizing<[u8; 104]> {
    let mut stream = Zeroizing::new([0u8; 104]);
    scrypt::scrypt(passphrase.as_bytes(), salt, params, &mut stream[..])
        .expect("a 104-byte scrypt output is always valid");
    stream
}

fn xor(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    /// Written by `minisign -G -W` (minisign 0.11): zero salt, limits and checksum.
    const MINISIGN_UNENCRYPTED: &str = "untrusted comment: minisign encrypted secret key\n\
        RWQAAEIyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAeb1kB8hpLqs0KHP3\
        Dgm+GQ2LtTaxc+NcD4mrFnUFGBHdDqDAl+svekHKVbxxja5QA4t4QBjRAgjjujhCvXqF3IXuiuDglb3nAAAAAAAA\
        AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";

    fn payload_of(text: &str) -> Vec<u8> {
        STANDARD.decode(text.lines().nth(1).unwrap()).unwrap()
    }

    fn with_line2(line: &str) -> String {
        format!("untrusted comment: minisign encrypted secret key\n{line}\n")
    }

    fn with_payload(bytes: &[u8]) -> String {
        with_line2(&STANDARD.encode(bytes))
    }

    #[test]
    fn scrypt_params_match_libsodium_pickparams() {
        assert_eq!(KdfLimits::MINISIGN_DEFAULT.scrypt_params(), (20, 8, 1));
        assert_eq!(KdfLimits::INTERACTIVE.scrypt_params(), (14, 8, 1));
        // minisign halves both limits when memory is short.
        let halved = KdfLimits {
            opslimit: 16_777_216,
            memlimit: 536_870_912,
        };
        assert_eq!(halved.scrypt_params(), (19, 8, 1));
        // opslimit-bound branch (opslimit < memlimit / 32).
        let ops_bound = KdfLimits {
            opslimit: 1_000_000,
            memlimit: 1 << 30,
        };
        assert_eq!(ops_bound.scrypt_params(), (14, 8, 1));
        // More opslimit than memory: parallelism grows.
        let wide = KdfLimits {
            opslimit: 1 << 30,
            memlimit: 1 << 24,
        };
        assert_eq!(wide.scrypt_params(), (14, 8, 2048));
    }

    #[test]
    fn reads_minisign_unencrypted_key_with_zero_checksum() {
        let key = SecretKey::parse(MINISIGN_UNENCRYPTED, None).unwrap();
        assert_eq!(key.id().to_string(), "AB2E69C80764BD79");
        assert!(!SecretKey::is_encrypted(MINISIGN_UNENCRYPTED).unwrap());
        assert_eq!(
            key.public_key().to_base64(),
            "RWR5vWQHyGkuq0HKVbxxja5QA4t4QBjRAgjjujhCvXqF3IXuiuDglb3n"
        );
    }

    #[test]
    fn unencrypted_round_trip_has_minisign_layout_and_a_checksum() {
        let key = SecretKey::generate();
        let text = key.to_file_string(None).unwrap();
        assert!(text.starts_with("untrusted comment: minisign encrypted secret key\n"));
        assert!(text.ends_with('\n'));
        let payload = payload_of(&text);
        assert_eq!(&payload[..6], b"Ed\0\0B2");
        assert!(payload[SALT]
            .iter()
            .chain(&payload[OPSLIMIT])
            .chain(&payload[MEMLIMIT])
            .all(|&b| b == 0));
        assert!(payload[CHK].iter().any(|&b| b != 0));
        let back = SecretKey::parse(&text, None).unwrap();
        assert_eq!(back.public_key(), key.public_key());
        assert!(!SecretKey::is_encrypted(&text).unwrap());
    }

    #[test]
    fn encrypted_round_trip_and_wrong_passphrase() {
        let key = SecretKey::generate();
        let text = key
            .to_file_string_with_limits("correct horse", KdfLimits::INTERACTIVE)
            .unwrap();
        assert!(SecretKey::is_encrypted(&text).unwrap());
        let payload = payload_of(&text);
        assert_eq!(&payload[..6], b"EdScB2");
        assert_eq!(payload[OPSLIMIT], 524_288u64.to_le_bytes());
        assert_eq!(payload[MEMLIMIT], 16_777_216u64.to_le_bytes());
        // The key id is encrypted too.
        assert_ne!(payload[KEYNUM], key.id().0);

        let back = SecretKey::parse(&text, Some("correct horse")).unwrap();
        assert_eq!(back.public_key(), key.public_key());

        let err = SecretKey::parse_from(&text, Some("wrong horse"), "/k/ferry.key").unwrap_err();
        assert!(matches!(err, Error::WrongPassphrase { .. }));
        let msg = err.to_string();
        assert!(
            msg.starts_with("wrong passphrase for secret key /k/ferry.key\nhelp: "),
            "{msg}"
        );
        assert!(!msg.contains("wrong horse") && !msg.contains("correct horse"));

        let err = SecretKey::parse(&text, None).unwrap_err();
        assert!(matches!(err, Error::PassphraseRequired { .. }), "{err}");
    }

    #[test]
    fn empty_passphrase_is_refused() {
        let err = SecretKey::generate()
            .to_file_string_with_limits("", KdfLimits::INTERACTIVE)
            .unwrap_err();
        assert!(matches!(err, Error::EmptyPassphrase));
    }

    #[test]
    fn absurd_kdf_limits_are_refused_before_deriving() {
        let mut payload = payload_of(MINISIGN_UNENCRYPTED);
        payload[KDF_ALG].copy_from_slice(b"Sc");
        payload[OPSLIMIT].copy_from_slice(&33_554_432u64.to_le_bytes());
        payload[MEMLIMIT].copy_from_slice(&(8u64 << 30).to_le_bytes());
        let err =
            SecretKey::parse_from(&with_payload(&payload), Some("pw"), "big.key").unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::KdfLimits { .. }));
        assert!(
            msg.starts_with("secret key big.key asks for scrypt limits"),
            "{msg}"
        );
        assert!(
            msg.contains("memlimit 8589934592 bytes (at most 4294967296)"),
            "{msg}"
        );

        payload[MEMLIMIT].copy_from_slice(&(1u64 << 30).to_le_bytes());
        payload[OPSLIMIT].copy_from_slice(&u64::MAX.to_le_bytes());
        let err = SecretKey::parse(&with_payload(&payload), Some("pw")).unwrap_err();
        assert!(matches!(err, Error::KdfLimits { .. }), "{err}");

        let err = SecretKey::generate()
            .to_file_string_with_limits(
                "pw",
                KdfLimits {
                    opslimit: 1 << 25,
                    memlimit: 1 << 40,
                },
            )
            .unwrap_err();
        assert!(matches!(err, Error::KdfLimits { .. }), "{err}");
    }

    #[test]
    fn corrupted_unencrypted_keys_are_refused() {
        let key = SecretKey::generate();
        let good = payload_of(&key.to_file_string(None).unwrap());

        let mut bad_chk = good.clone();
        bad_chk[CHK.start] ^= 1;
        let err = SecretKey::parse(&with_payload(&bad_chk), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("checksum mismatch"), "{err}");

        // Wrong public half, zero checksum (so only the keypair check can catch it).
        let mut bad_pk = good.clone();
        bad_pk[PK.start] ^= 1;
        bad_pk[CHK].fill(0);
        let err = SecretKey::parse(&with_payload(&bad_pk), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("do not match"), "{err}");

        let mut other_kdf = good.clone();
        other_kdf[KDF_ALG].copy_from_slice(b"Ar");
        let err = SecretKey::parse(&with_payload(&other_kdf), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported key derivation"), "{err}");

        let err = SecretKey::parse(&with_payload(&good[..157]), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected 158 bytes"), "{err}");
    }

    #[test]
    fn errors_never_quote_secret_text() {
        let text = SecretKey::generate().to_file_string(None).unwrap();
        let line = text.lines().nth(1).unwrap();
        // Corrupt a character in the middle so base64 decoding fails.
        let bad = with_line2(&format!("{}*{}", &line[..100], &line[101..]));
        let err = SecretKey::parse(&bad, None).unwrap_err().to_string();
        assert_eq!(err, "malformed secret key: line 2: invalid base64");
    }

    #[test]
    fn debug_shows_only_the_key_id() {
        let key = SecretKey::generate();
        let debug = format!("{key:?}");
        assert_eq!(debug, format!("SecretKey {{ id: {}, .. }}", key.id()));
        let seed = key.signing.as_bytes();
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        assert!(!debug.contains(&hex));
        assert!(!debug.contains(&STANDARD.encode(seed)));
        assert!(!debug.contains(&format!("{seed:?}")));
        let file_line = key
            .to_file_string(None)
            .unwrap()
            .lines()
            .nth(1)
            .unwrap()
            .to_owned();
        assert!(!debug.contains(&file_line[80..120]));
    }

    #[test]
    fn save_creates_0600_file_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.key");
        let key = SecretKey::generate();
        key.save(&path, None).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(SecretKey::load(&path, None).unwrap().id(), key.id());
        assert!(key.save(&path, None).is_err());
    }
}
