//! Shared plumbing for minisign's line-based text files: bounded file reads, line
//! splitting and base64. Tolerant only of what editors and transports commonly add
//! (`\r\n` line ends, a missing final newline); strict about everything else.
//!
//! Errors produced here never quote the input: the same code reads secret keys.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use zeroize::Zeroizing;

use crate::Error;

/// Largest key or signature file read. minisign's own limits (1 KiB untrusted comment,
/// 8 KiB trusted comment) keep real files far smaller.
pub(crate) const MAX_FILE_BYTES: u64 = 64 * 1024;

/// Reads a whole (small) file, refusing special files and anything over
/// [`MAX_FILE_BYTES`]. The bytes are returned in a zeroizing buffer because secret key
/// files are read through here too.
pub(crate) fn read_file(path: &Path, what: &'static str) -> Result<Zeroizing<String>, Error> {
    let io = |source| Error::Io {
        action: "read",
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(malformed(
            what,
            Some(path.display().to_string()),
            "not a regular file",
        ));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(too_large(what, path));
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(meta.len() as usize + 1));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(what, path));
    }
    match std::str::from_utf8(&buf) {
        Ok(text) => Ok(Zeroizing::new(text.to_owned())),
        Err(_) => Err(malformed(
            what,
            Some(path.display().to_string()),
            "not UTF-8 text",
        )),
    }
}

fn too_large(what: &'static str, path: &Path) -> Error {
    malformed(
        what,
        Some(path.display().to_string()),
        format!("larger than {MAX_FILE_BYTES} bytes"),
    )
}

/// Creates `path` (which must not exist) with `mode` and writes `contents`, syncing it
/// to disk. On failure the partial file is removed.
pub(crate) fn write_new_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), Error> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|source| Error::Io {
        action: "create",
        path: path.to_owned(),
        source,
    })?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    if let Err(source) = written {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(Error::Io {
            action: "write",
            path: path.to_owned(),
            source,
        });
    }
    Ok(())
}

/// Builds an [`Error::Malformed`].
pub(crate) fn malformed(
    what: &'static str,
    origin: Option<String>,
    reason: impl Into<String>,
) -> Error {
    Error::Malformed {
        what,
        origin,
        reason: reason.into(),
    }
}

/// Splits file text into lines. Lines end in `\n` or `\r\n`; the last terminator is
/// optional. A `\r` or NUL anywhere else is rejected: minisign cuts lines at them, so
/// accepting them would let ferry and minisign read different comments.
pub(crate) fn split_lines(text: &str) -> Result<Vec<&str>, String> {
    let body = match text.strip_suffix('\n') {
        Some(rest) => rest.strip_suffix('\r').unwrap_or(rest),
        None => text,
    };
    let mut lines = Vec::new();
    for (i, line) in body.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.contains('\r') {
            return Err(format!("line {}: stray carriage return", i + 1));
        }
        if line.contains('\0') {
            return Err(format!("line {}: NUL byte", i + 1));
        }
        lines.push(line);
    }
    Ok(lines)
}

/// Decodes one line of standard, padded base64 into exactly `N` bytes.
pub(crate) fn decode_fixed<const N: usize>(line: &str, line_no: usize) -> Result<[u8; N], String> {
    let bytes = decode_vec(line, line_no)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| wrong_length(line_no, N, bytes.len()))
}

/// Decodes one line of standard, padded base64 into a zeroizing buffer.
pub(crate) fn decode_vec(line: &str, line_no: usize) -> Result<Zeroizing<Vec<u8>>, String> {
    // The decode error is dropped on purpose: it quotes the offending character, and
    // this also decodes secret keys.
    STANDARD
        .decode(line)
        .map(Zeroizing::new)
        .map_err(|_| format!("line {line_no}: invalid base64"))
}

pub(crate) fn wrong_length(line_no: usize, expected: usize, found: usize) -> String {
    format!("line {line_no}: expected {expected} bytes after base64 decoding, found {found}")
}

/// Encodes bytes as standard, padded base64 (minisign's alphabet).
pub(crate) fn encode(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Encodes into `out`, which must be exactly [`encoded_len`] bytes; returns the length
/// written. Writing into a caller-owned buffer lets secrets be encoded without leaving
/// unzeroized copies behind.
pub(crate) fn encode_slice(bytes: &[u8], out: &mut [u8]) -> usize {
    STANDARD
        .encode_slice(bytes, out)
        .expect("output buffer sized with encoded_len")
}

/// Length of the padded base64 encoding of `n` bytes.
pub(crate) fn encoded_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_lines_accepts_lf_crlf_and_missing_final_newline() {
        for text in ["a\nb\n", "a\r\nb\r\n", "a\nb", "a\r\nb"] {
            assert_eq!(split_lines(text).unwrap(), ["a", "b"], "{text:?}");
        }
    }

    #[test]
    fn split_lines_keeps_extra_lines_for_the_caller_to_count() {
        assert_eq!(split_lines("a\nb\n\n").unwrap(), ["a", "b", ""]);
        assert_eq!(split_lines("").unwrap(), [""]);
    }

    #[test]
    fn split_lines_rejects_stray_cr_and_nul() {
        assert!(split_lines("a\rb\n").unwrap_err().contains("line 1"));
        assert!(split_lines("a\nb\0\n").unwrap_err().contains("line 2"));
    }

    #[test]
    fn decode_fixed_checks_base64_and_length() {
        assert_eq!(decode_fixed::<3>("YWJj", 2).unwrap(), *b"abc");
        assert_eq!(
            decode_fixed::<4>("YWJj", 2).unwrap_err(),
            "line 2: expected 4 bytes after base64 decoding, found 3"
        );
        assert_eq!(
            decode_fixed::<3>("YW*j", 2).unwrap_err(),
            "line 2: invalid base64"
        );
        // Unpadded and non-canonical encodings are refused.
        assert!(decode_fixed::<2>("YWI", 1).is_err());
        assert!(decode_fixed::<1>("YR==", 1).is_err());
    }

    #[test]
    fn encoded_len_matches_base64() {
        for n in 0..200 {
            assert_eq!(encoded_len(n), encode(&vec![0u8; n]).len());
        }
    }
}
