//! UTC timestamps as the manifest writes them: `YYYY-MM-DDTHH:MM:SSZ`, nothing else.
//!
//! A tiny, strict civil-calendar conversion so the bundle crate needs no date library.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Seconds since the Unix epoch, written as RFC 3339 UTC with a `Z` suffix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current time from the system clock.
    pub fn now() -> Timestamp {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Timestamp(secs)
    }

    /// Seconds since the Unix epoch.
    pub fn unix(self) -> u64 {
        self.0
    }

    /// Parse `YYYY-MM-DDTHH:MM:SSZ` strictly.
    pub fn parse(s: &str) -> Option<Timestamp> {
        let b = s.as_bytes();
        if b.len() != 20
            || b[4] != b'-'
            || b[7] != b'-'
            || b[10] != b'T'
            || b[13] != b':'
            || b[16] != b':'
            || b[19] != b'Z'
        {
            return None;
        }
        let num = |r: std::ops::Range<usize>| -> Option<u64> {
            let part = &s[r];
            if !part.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            part.parse().ok()
        };
        let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if y < 1970 || !(1..=12).contains(&mo) || d < 1 || d > days_in_month(y, mo) {
            return None;
        }
        if h > 23 || mi > 59 || se > 59 {
            return None;
        }
        let days = days_from_civil(y as i64, mo as i64, d as i64);
        Some(Timestamp(days as u64 * 86_400 + h * 3600 + mi * 60 + se))
    }
}

impl Timestamp {
    /// The date as RFC 2822 writes it (`Sat, 21 Nov 2026 00:00:00 UTC`), as APT's
    /// `Release` files carry it.
    pub fn rfc2822(self) -> String {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = (self.0 / 86_400) as i64;
        let rem = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        format!(
            "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} UTC",
            DAYS[(days % 7) as usize],
            MONTHS[(m - 1) as usize],
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = (self.0 / 86_400) as i64;
        let rem = self.0 % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Timestamp::parse(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "invalid timestamp {s:?}: expected UTC as YYYY-MM-DDTHH:MM:SSZ"
            ))
        })
    }
}

fn is_leap(y: u64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: u64, m: u64) -> u64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

// Howard Hinnant's algorithms, valid for the proleptic Gregorian calendar.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2822_dates() {
        assert_eq!(Timestamp(0).rfc2822(), "Thu, 01 Jan 1970 00:00:00 UTC");
        assert_eq!(
            Timestamp::parse("2026-11-21T03:04:05Z").unwrap().rfc2822(),
            "Sat, 21 Nov 2026 03:04:05 UTC"
        );
    }

    #[test]
    fn known_dates_round_trip() {
        for (s, n) in [
            ("1970-01-01T00:00:00Z", 0),
            ("2026-11-21T00:00:00Z", 1_763_683_200 + 365 * 86_400),
            ("2000-02-29T12:34:56Z", 951_827_696),
        ] {
            assert_eq!(Timestamp::parse(s), Some(Timestamp(n)), "{s}");
            assert_eq!(Timestamp(n).to_string(), s);
        }
    }

    #[test]
    fn rejects_loose_forms() {
        for s in [
            "2026-11-21T00:00:00",
            "2026-11-21 00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-21T24:00:00Z",
            "2026-11-21T00:00:00+00:00",
            "+026-11-21T00:00:00Z",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(Timestamp::parse(s), None, "{s}");
        }
    }

    #[test]
    fn every_day_for_centuries_round_trips() {
        let mut t = 0;
        while t < 200 * 366 * 86_400 {
            let s = Timestamp(t).to_string();
            assert_eq!(Timestamp::parse(&s), Some(Timestamp(t)));
            t += 86_400 + 3_661;
        }
    }
}
