//! Secret keys on disk: generating them and loading them with a passphrase taken from
//! `FERRY_PASSPHRASE` or a terminal prompt. Passphrases live in zeroizing buffers.

use crate::{Error, Result};
use ferry_keys::{PublicKey, SecretKey};
use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Environment variable that supplies the passphrase without a prompt.
pub const PASSPHRASE_ENV: &str = "FERRY_PASSPHRASE";

/// Where a passphrase comes from.
pub trait PassphraseSource {
    /// Ask for the passphrase of an existing key.
    fn get(&self, key_path: &Path) -> Result<Zeroizing<String>>;
    /// Ask for a new passphrase (twice, when interactive).
    fn new_passphrase(&self) -> Result<Zeroizing<String>>;
}

/// `FERRY_PASSPHRASE`, else a prompt on the terminal.
pub struct EnvOrPrompt;

impl PassphraseSource for EnvOrPrompt {
    fn get(&self, key_path: &Path) -> Result<Zeroizing<String>> {
        if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
            return Ok(Zeroizing::new(p));
        }
        prompt(&format!("Passphrase for {}: ", key_path.display()))
    }

    fn new_passphrase(&self) -> Result<Zeroizing<String>> {
        if let Ok(p) = std::env::var(PASSPHRASE_ENV) {
            if p.is_empty() {
                return Err(Error::Usage(format!(
                    "{PASSPHRASE_ENV} is empty\nhelp: set a passphrase, or use --no-passphrase for an unencrypted key"
                )));
            }
            return Ok(Zeroizing::new(p));
        }
        let first = prompt("New passphrase: ")?;
        let second = prompt("Repeat passphrase: ")?;
        if *first != *second {
            return Err(Error::Usage("the passphrases do not match".into()));
        }
        if first.is_empty() {
            return Err(Error::Usage(
                "empty passphrase\nhelp: use --no-passphrase for an unencrypted key".into(),
            ));
        }
        Ok(first)
    }
}

fn prompt(text: &str) -> Result<Zeroizing<String>> {
    rpassword::prompt_password(text).map(Zeroizing::new).map_err(|e| {
        Error::Usage(format!(
            "cannot read a passphrase from the terminal: {e}\nhelp: set {PASSPHRASE_ENV}, or run in a terminal"
        ))
    })
}

/// Load a secret key, asking for the passphrase only if the key is encrypted.
pub fn load_secret_key(path: &Path, source: &dyn PassphraseSource) -> Result<SecretKey> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?);
    let encrypted = SecretKey::is_encrypted(&text).map_err(|e| with_path(e, path))?;
    let passphrase = if encrypted {
        Some(source.get(path)?)
    } else {
        None
    };
    SecretKey::parse(&text, passphrase.as_deref().map(String::as_str))
        .map_err(|e| with_path(e, path))
}

fn with_path(e: ferry_keys::Error, path: &Path) -> Error {
    Error::Usage(format!("{}: {e}", path.display()))
}

/// The two files `key generate --out PATH` writes.
pub struct GeneratedKey {
    /// `PATH.key`, mode 0600.
    pub secret_path: PathBuf,
    /// `PATH.pub`.
    pub public_path: PathBuf,
    /// The public key.
    pub public: PublicKey,
}

/// Generate a key pair and write `out.key` (0600) and `out.pub`.
pub fn generate(out: &Path, passphrase: Option<&str>, force: bool) -> Result<GeneratedKey> {
    let secret_path = with_suffix(out, ".key");
    let public_path = with_suffix(out, ".pub");
    if !force {
        for p in [&secret_path, &public_path] {
            if p.exists() {
                return Err(Error::Usage(format!(
                    "{} already exists\nhelp: choose another --out, or pass --force to replace it",
                    p.display()
                )));
            }
        }
    }
    let key = SecretKey::generate();
    let secret_text = Zeroizing::new(key.to_file_string(passphrase)?);
    let public = key.public_key();
    write_file(&secret_path, secret_text.as_bytes(), 0o600)?;
    write_file(&public_path, public.to_file_string().as_bytes(), 0o644)?;
    Ok(GeneratedKey {
        secret_path,
        public_path,
        public,
    })
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Write a small file atomically (temp in the same directory, fsync, rename) with `mode`.
pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = with_suffix(path, ".tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| Error::io(&tmp, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
    Ok(())
}
