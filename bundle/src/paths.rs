//! The path rules of `ferry/1`: relative, UTF-8, at most 240 bytes, segments of
//! `[A-Za-z0-9._+~%-]` joined by `/`, no empty, `.` or `..` segment.

/// Longest path a bundle entry may have, in bytes.
pub const MAX_PATH_LEN: usize = 240;

/// Check a bundle path against the format's rules; `Err` says which rule it breaks.
pub fn check_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("empty path".into());
    }
    if path.len() > MAX_PATH_LEN {
        return Err(format!(
            "path is {} bytes long; at most {MAX_PATH_LEN} are allowed",
            path.len()
        ));
    }
    if path.starts_with('/') {
        return Err("absolute path; bundle paths are relative".into());
    }
    for segment in path.split('/') {
        match segment {
            "" => return Err("empty path segment (\"//\" or a trailing \"/\")".into()),
            "." | ".." => {
                return Err(format!(
                    "path segment {segment:?} is not allowed; bundle paths never step outside"
                ))
            }
            _ => {}
        }
        if let Some(c) = segment.chars().find(|c| !is_allowed(*c)) {
            return Err(format!(
                "character {c:?} is not allowed; segments use only A-Z a-z 0-9 . _ + ~ % -"
            ));
        }
    }
    Ok(())
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '+' | '~' | '%' | '-')
}

/// Escape a `.deb` file name the way apt does (`:` becomes `%3a`).
pub fn escape_deb_name(name: &str) -> String {
    name.replace(':', "%3a")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_paths() {
        for p in [
            "debs/tyk-gateway_5.2.5_amd64.deb",
            "debs/foo_1%3a2.0~rc1+b1_all.deb",
            "files/plugins/plugin_v5.2.5_linux_amd64.so",
            "a",
            "..a/b..",
        ] {
            assert_eq!(check_path(p), Ok(()), "{p}");
        }
    }

    #[test]
    fn rejects_escapes_and_odd_characters() {
        for p in [
            "",
            "/etc/x",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a b",
            "a\\b",
            "ä",
            "a:b",
            "a\0b",
        ] {
            assert!(check_path(p).is_err(), "{p:?} was accepted");
        }
        assert!(check_path(&"a".repeat(241)).is_err());
        assert!(check_path(&"a".repeat(240)).is_ok());
    }

    #[test]
    fn escapes_epoch_colons() {
        assert_eq!(escape_deb_name("foo_1:2.0_all.deb"), "foo_1%3a2.0_all.deb");
    }
}
