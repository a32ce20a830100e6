//! What the installer knows about Tyk's configuration files: where each component
//! answers its health check, and which files a gateway's `tyk.conf` points at (API
//! definitions, policies, middleware, certificates) so a backup takes them too.
//!
//! Environment overrides (`TYK_GW_LISTENPORT` in `/etc/default/tyk-gateway`, ...) are
//! not read; a host that uses them sets `[health.<component>]` in `installer.toml`.

use crate::host::Host;
use serde_json::Value;

/// The health URL of a Tyk component from its installed configuration, or why it cannot
/// be worked out (the caller falls back to the bundle's URL).
///
/// - `tyk-gateway`: `control_api_port` when non-zero, else `listen_port` (default 8080);
///   path `health_check_endpoint_name` (default `hello`); the host from
///   `control_api_hostname` / `listen_address` when set to a specific address.
/// - `tyk-dashboard`: `listen_port` (default 3000), `/hello`.
/// - `tyk-pump`: `health_check_endpoint_port` (default 8083) and
///   `health_check_endpoint_name` (default `health`).
///
/// TLS (`http_server_options.use_ssl`) yields an `https://` URL, which the health check
/// refuses with advice to set a plain-HTTP URL in `installer.toml`.
pub fn health_url(profile: &str, config: &Value) -> Result<String, String> {
    let port = |key: &str, default: u64| -> Result<u64, String> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_u64()
                .filter(|p| *p <= 65535)
                .ok_or_else(|| format!("{key} is not a port number")),
        }
    };
    let name = |key: &str, default: &str| -> String {
        config
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .unwrap_or(default)
            .trim_start_matches('/')
            .to_string()
    };
    let tls = config
        .pointer("/http_server_options/use_ssl")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let scheme = if tls { "https" } else { "http" };
    let host_of = |keys: &[&str]| -> String {
        keys.iter()
            .filter_map(|k| config.get(*k).and_then(Value::as_str))
            .find(|h| !h.is_empty() && *h != "0.0.0.0" && *h != "::")
            .map_or_else(
                || "127.0.0.1".to_string(),
                |h| {
                    if h.contains(':') {
                        format!("[{h}]")
                    } else {
                        h.to_string()
                    }
                },
            )
    };
    match profile {
        "tyk-gateway" => {
            let control = port("control_api_port", 0)?;
            let port = if control != 0 {
                control
            } else {
                port("listen_port", 8080)?
            };
            let host = if control != 0 {
                host_of(&["control_api_hostname", "listen_address"])
            } else {
                host_of(&["listen_address"])
            };
            let path = name("health_check_endpoint_name", "hello");
            Ok(format!("{scheme}://{host}:{port}/{path}"))
        }
        "tyk-dashboard" => {
            let port = port("listen_port", 3000)?;
            Ok(format!("{scheme}://127.0.0.1:{port}/hello"))
        }
        "tyk-pump" => {
            let port = port("health_check_endpoint_port", 8083)?;
            let path = name("health_check_endpoint_name", "health");
            // Pump's health endpoint is plain HTTP whatever else it does.
            Ok(format!("http://127.0.0.1:{port}/{path}"))
        }
        other => Err(format!(
            "unknown health profile {other:?} (tyk-gateway, tyk-dashboard, tyk-pump)"
        )),
    }
}

/// Read `config` on the host and derive the health URL with [`health_url`].
pub fn derive_health_url(host: &Host, profile: &str, config: &str) -> Result<String, String> {
    let path = host.path(config);
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: Value = serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not valid JSON: {e}", path.display()))?;
    health_url(profile, &json)
}

/// Keys whose values in a Tyk config name files or directories worth backing up.
const PATH_KEY_SUFFIXES: [&str; 6] = ["_path", "_file", "_dir", "cert", "certs", "certificates"];

/// Absolute paths a Tyk configuration points at (API definitions, policies,
/// middleware, templates, certificates and keys), in document order, without
/// duplicates. Only values under keys that name files (`app_path`, `policy_path`,
/// `cert_file`, `certificates`, ...) count; whether they exist is for the caller.
pub fn referenced_paths(config: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk(config, None, &mut out);
    out
}

fn walk(v: &Value, key: Option<&str>, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                walk(v, Some(k), out);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, key, out);
            }
        }
        Value::String(s) => {
            // `listen_path` is a URL path of an API, not a file.
            let named = key.is_some_and(|k| {
                let k = k.to_ascii_lowercase();
                k != "listen_path" && PATH_KEY_SUFFIXES.iter().any(|suffix| k.ends_with(suffix))
            });
            let s = s.trim_end_matches('/');
            if named && s.starts_with('/') && s.len() > 1 && !out.iter().any(|o| o == s) {
                out.push(s.to_string());
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn gateway_health_follows_ports_and_names() {
        assert_eq!(
            health_url("tyk-gateway", &json!({})).unwrap(),
            "http://127.0.0.1:8080/hello"
        );
        assert_eq!(
            health_url("tyk-gateway", &json!({"listen_port": 8181})).unwrap(),
            "http://127.0.0.1:8181/hello"
        );
        assert_eq!(
            health_url(
                "tyk-gateway",
                &json!({"listen_port": 8181, "control_api_port": 9696,
                        "health_check_endpoint_name": "/status"})
            )
            .unwrap(),
            "http://127.0.0.1:9696/status"
        );
        assert_eq!(
            health_url(
                "tyk-gateway",
                &json!({"listen_address": "10.0.0.5", "http_server_options": {"use_ssl": true}})
            )
            .unwrap(),
            "https://10.0.0.5:8080/hello"
        );
        assert!(health_url("tyk-gateway", &json!({"listen_port": "x"})).is_err());
    }

    #[test]
    fn dashboard_and_pump_health() {
        assert_eq!(
            health_url("tyk-dashboard", &json!({"listen_port": 3001})).unwrap(),
            "http://127.0.0.1:3001/hello"
        );
        assert_eq!(
            health_url("tyk-pump", &json!({})).unwrap(),
            "http://127.0.0.1:8083/health"
        );
        assert_eq!(
            health_url(
                "tyk-pump",
                &json!({"health_check_endpoint_port": 9000, "health_check_endpoint_name": "ok"})
            )
            .unwrap(),
            "http://127.0.0.1:9000/ok"
        );
        assert!(health_url("tyk-unknown", &json!({})).is_err());
    }

    #[test]
    fn paths_named_by_a_gateway_config() {
        let conf = json!({
            "app_path": "/opt/tyk-gateway/apps/",
            "middleware_path": "/opt/tyk-gateway/middleware",
            "template_path": "/opt/tyk-gateway/templates",
            "policies": {"policy_source": "file", "policy_path": "/opt/tyk-gateway/policies"},
            "http_server_options": {
                "certificates": [{"domain_name": "a", "cert_file": "/etc/tyk/a.pem", "key_file": "/etc/tyk/a.key"}],
                "ssl_certificates": ["/etc/tyk/b.pem", "5f6a-cert-id"]
            },
            "listen_path": "/not-a-file-key",
            "storage": {"host": "/not/a/path/key"}
        });
        assert_eq!(
            referenced_paths(&conf),
            [
                "/opt/tyk-gateway/apps",
                "/etc/tyk/a.pem",
                "/etc/tyk/a.key",
                "/etc/tyk/b.pem",
                "/opt/tyk-gateway/middleware",
                "/opt/tyk-gateway/policies",
                "/opt/tyk-gateway/templates",
            ]
        );
    }
}
