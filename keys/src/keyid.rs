//! Minisign key ids: the 8 random bytes that tie signatures to keys.
//!
//! minisign stores the key number as 8 bytes and prints it as `%016X` of the bytes read
//! as a little-endian `u64`. [`KeyId`]'s `Display`, `FromStr` and ordering all use that
//! number, so `ferry/signatures/<KEYID>.minisig` names, sorted listings and minisign's
//! own output agree.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use crate::Error;

/// A minisign key id (the key number as stored in key and signature files).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 8]);

impl KeyId {
    /// The key id as minisign's number (`u64::from_le_bytes` of the stored bytes).
    pub fn as_u64(&self) -> u64 {
        u64::from_le_bytes(self.0)
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016X}", self.as_u64())
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Ordered as displayed, so sorted key ids list in the order a human reads them.
impl Ord for KeyId {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_u64().cmp(&other.as_u64())
    }
}

impl PartialOrd for KeyId {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Parses exactly 16 hexadecimal digits (either case), as minisign prints them.
impl FromStr for KeyId {
    type Err = Error;

    fn from_str(s: &str) -> Result<KeyId, Error> {
        if s.len() != 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidKeyId {
                input: s.to_owned(),
            });
        }
        let n = u64::from_str_radix(s, 16).map_err(|_| Error::InvalidKeyId {
            input: s.to_owned(),
        })?;
        Ok(KeyId(n.to_le_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_upper_hex_of_little_endian_u64() {
        // Bytes and text taken from a key made by `minisign -G -W`.
        let id = KeyId([0x79, 0xbd, 0x64, 0x07, 0xc8, 0x69, 0x2e, 0xab]);
        assert_eq!(id.to_string(), "AB2E69C80764BD79");
        assert_eq!(format!("{id:?}"), "KeyId(AB2E69C80764BD79)");
    }

    #[test]
    fn display_pads_leading_zeros_to_16_digits() {
        let id = KeyId([1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(id.to_string(), "0000000000000001");
    }

    #[test]
    fn parse_round_trips_and_accepts_lower_case() {
        let id: KeyId = "AB2E69C80764BD79".parse().unwrap();
        assert_eq!(id.0, [0x79, 0xbd, 0x64, 0x07, 0xc8, 0x69, 0x2e, 0xab]);
        assert_eq!("ab2e69c80764bd79".parse::<KeyId>().unwrap(), id);
    }

    #[test]
    fn parse_rejects_wrong_length_and_non_hex() {
        for bad in [
            "",
            "AB2E69C80764BD7",
            "AB2E69C80764BD790",
            "+B2E69C80764BD79",
            "AB2E69C80764BD7G",
        ] {
            let err = bad.parse::<KeyId>().unwrap_err();
            assert!(matches!(err, Error::InvalidKeyId { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn ordering_follows_display() {
        let mut ids = [
            KeyId([0, 0, 0, 0, 0, 0, 0, 1]),
            KeyId([2, 0, 0, 0, 0, 0, 0, 0]),
        ];
        ids.sort();
        assert_eq!(ids[0].to_string(), "0000000000000002");
        assert_eq!(ids[1].to_string(), "0100000000000000");
    }
}
