//! Version requests in a spec: an exact Debian version (`5.2.5`, `1:2.0~rc1-3`) or one
//! or more constraints (`>= 5.2`, `>= 5.2, << 6`), compared with Debian's ordering.

use debian_packaging::dependency::VersionRelationship;
use debian_packaging::package_version::PackageVersion;
use std::cmp::Ordering;
use std::fmt;

/// A parsed `version = "..."` of a `[[package]]`.
#[derive(Clone, Debug)]
pub enum VersionReq {
    /// Any version (the newest wins).
    Any,
    /// Exactly this version.
    Exact(PackageVersion),
    /// Every constraint must hold.
    Constraints(Vec<(VersionRelationship, PackageVersion)>),
}

impl VersionReq {
    /// Parse `None` (any), an exact version, or comma-separated constraints.
    pub fn parse(text: Option<&str>) -> Result<VersionReq, String> {
        let Some(text) = text.map(str::trim) else {
            return Ok(VersionReq::Any);
        };
        if text.is_empty() {
            return Err("empty version".into());
        }
        let starts_with_op = text.starts_with(['<', '>', '=']);
        if !starts_with_op {
            return parse_version(text).map(VersionReq::Exact);
        }
        let mut out = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (rel, rest) = if let Some(r) = part.strip_prefix(">=") {
                (VersionRelationship::LaterOrEqual, r)
            } else if let Some(r) = part.strip_prefix("<=") {
                (VersionRelationship::EarlierOrEqual, r)
            } else if let Some(r) = part.strip_prefix(">>") {
                (VersionRelationship::StrictlyLater, r)
            } else if let Some(r) = part.strip_prefix("<<") {
                (VersionRelationship::StrictlyEarlier, r)
            } else if let Some(r) = part.strip_prefix('=') {
                (VersionRelationship::ExactlyEqual, r)
            } else if part.starts_with('>') || part.starts_with('<') {
                return Err(format!(
                    "{part:?}: use Debian's operators >=, <=, >>, << or ="
                ));
            } else {
                return Err(format!("{part:?} is not a constraint like \">= 5.2\""));
            };
            let rest = rest.trim();
            if rest.is_empty() {
                return Err(format!("{part:?} has no version after the operator"));
            }
            out.push((rel, parse_version(rest)?));
        }
        Ok(VersionReq::Constraints(out))
    }

    /// Whether `version` satisfies the request.
    pub fn matches(&self, version: &PackageVersion) -> bool {
        match self {
            VersionReq::Any => true,
            VersionReq::Exact(v) => version.cmp(v) == Ordering::Equal,
            VersionReq::Constraints(list) => {
                list.iter().all(|(rel, v)| satisfies(version, *rel, v))
            }
        }
    }
}

impl fmt::Display for VersionReq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionReq::Any => write!(f, "any version"),
            VersionReq::Exact(v) => write!(f, "= {v}"),
            VersionReq::Constraints(list) => {
                let parts: Vec<String> = list.iter().map(|(r, v)| format!("{r} {v}")).collect();
                write!(f, "{}", parts.join(", "))
            }
        }
    }
}

/// Parse a Debian version, with a message that names it.
pub fn parse_version(text: &str) -> Result<PackageVersion, String> {
    if text.is_empty()
        || text.contains(char::is_whitespace)
        || !text.starts_with(|c: char| c.is_ascii_digit())
    {
        return Err(format!(
            "{text:?} is not a Debian version (it must start with a digit)"
        ));
    }
    PackageVersion::parse(text).map_err(|e| format!("{text:?} is not a Debian version: {e}"))
}

/// `version rel bound`, Debian semantics.
pub fn satisfies(
    version: &PackageVersion,
    rel: VersionRelationship,
    bound: &PackageVersion,
) -> bool {
    let ord = version.cmp(bound);
    match rel {
        VersionRelationship::StrictlyEarlier => ord == Ordering::Less,
        VersionRelationship::EarlierOrEqual => ord != Ordering::Greater,
        VersionRelationship::ExactlyEqual => ord == Ordering::Equal,
        VersionRelationship::LaterOrEqual => ord != Ordering::Less,
        VersionRelationship::StrictlyLater => ord == Ordering::Greater,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> PackageVersion {
        parse_version(s).unwrap()
    }

    #[test]
    fn debian_ordering_with_epochs_and_tilde() {
        assert!(v("5.2.1~rc6") < v("5.2.1"));
        assert!(v("1:0.1") > v("9.9"));
        assert!(v("1.0-1") < v("1.0-1+b1"));
        assert!(v("1.0~~") < v("1.0~"));
    }

    #[test]
    fn requests_parse_and_match() {
        let r = VersionReq::parse(Some(">= 5.2, << 6")).unwrap();
        assert!(r.matches(&v("5.2.5")));
        assert!(!r.matches(&v("6.0")));
        assert!(!r.matches(&v("5.1.9")));
        let exact = VersionReq::parse(Some("5.2.5")).unwrap();
        assert!(exact.matches(&v("5.2.5")));
        assert!(exact.matches(&v("0:5.2.5")));
        assert!(!exact.matches(&v("5.2.5-1")));
        assert!(VersionReq::parse(Some("> 5")).is_err());
        assert!(VersionReq::parse(Some(">= ")).is_err());
        assert!(VersionReq::parse(None).unwrap().matches(&v("1")));
    }
}
