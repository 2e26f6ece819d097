//! Typed configuration, read from `HOOKGATE_*` environment variables and optionally a TOML file
//! (same keys, lower case, without the prefix). Environment wins over the file. Every value is
//! validated at start-up; an invalid one stops start-up with a message naming the key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use base64::Engine;
use ipnet::IpNet;

/// Every configuration key hookgate reads (without the `HOOKGATE_` prefix, lower case).
pub const KEYS: &[&str] = &[
    "listen",
    "database_url",
    "public_url",
    "trusted_proxies",
    "admin_token",
    "master_key",
    "retry_schedule",
    "delivery_timeout",
    "allow_http_targets",
    "allow_private_targets",
    "max_body",
    "retention",
    "log_format",
    "sqlite_busy_timeout",
    "poll_interval",
];

/// The validated configuration of one gateway instance.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to bind.
    pub listen: SocketAddr,
    /// `sqlite://PATH` or `postgres://…`.
    pub database_url: String,
    /// Base URL providers call (no trailing slash). Twilio signatures are computed over it.
    pub public_url: String,
    /// Peers whose `X-Forwarded-*` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Operator bearer token; generated at first start when absent.
    pub admin_token: Option<String>,
    /// Key that encrypts provider credentials and subscription secrets at rest.
    pub master_key: Option<[u8; 32]>,
    /// Delays between delivery attempts.
    pub retry_schedule: Vec<Duration>,
    /// Whole-request timeout of one outbound attempt.
    pub delivery_timeout: Duration,
    /// Allow `http://` subscription URLs.
    pub allow_http_targets: bool,
    /// Private ranges outbound deliveries may reach.
    pub allow_private_targets: Vec<IpNet>,
    /// Largest inbound body in bytes.
    pub max_body: usize,
    /// How long events, payloads and dedup keys are kept.
    pub retention: Duration,
    /// `json` for JSON log lines, anything else for text.
    pub log_format: String,
    /// How long a SQLite writer waits for a lock before the request is answered 503.
    pub sqlite_busy_timeout: Duration,
    /// Fallback poll interval of the delivery worker (the hot path is woken in-process).
    pub poll_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self::from_map(&BTreeMap::new()).expect("defaults are valid")
    }
}

impl Config {
    /// Reads the environment, and `file` when given.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut map = BTreeMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading config file {}", path.display()))?;
            let table: toml::Table = text
                .parse()
                .with_context(|| format!("parsing config file {}", path.display()))?;
            for (k, v) in table {
                if !KEYS.contains(&k.as_str()) {
                    bail!("config file {}: unknown key `{k}`", path.display());
                }
                let s = match v {
                    toml::Value::String(s) => s,
                    toml::Value::Array(items) => items
                        .iter()
                        .map(|i| {
                            i.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| i.to_string())
                        })
                        .collect::<Vec<_>>()
                        .join(","),
                    other => other.to_string(),
                };
                map.insert(k, s);
            }
        }
        for key in KEYS {
            if let Ok(v) = std::env::var(format!("HOOKGATE_{}", key.to_uppercase())) {
                map.insert((*key).to_owned(), v);
            }
        }
        Self::from_map(&map)
    }

    /// Builds a config from `key → value` (keys as in [`KEYS`]); absent keys take defaults.
    pub fn from_map(map: &BTreeMap<String, String>) -> anyhow::Result<Self> {
        let get = |k: &str| map.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());
        let named =
            |k: &str, e: anyhow::Error| anyhow!("invalid HOOKGATE_{}: {e:#}", k.to_uppercase());

        let listen: SocketAddr = get("listen")
            .unwrap_or("127.0.0.1:8080")
            .parse()
            .map_err(|e: std::net::AddrParseError| named("listen", e.into()))?;
        let database_url = get("database_url")
            .unwrap_or("sqlite://hookgate.db")
            .to_owned();
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            return Err(named(
                "database_url",
                anyhow!("expected sqlite://PATH or postgres://…"),
            ));
        }
        let public_url = match get("public_url") {
            Some(u) => {
                let parsed = url::Url::parse(u).map_err(|e| named("public_url", e.into()))?;
                if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
                    return Err(named("public_url", anyhow!("expected an http(s) URL")));
                }
                u.trim_end_matches('/').to_owned()
            }
            None => format!("http://{listen}"),
        };
        let master_key = match get("master_key") {
            Some(k) => {
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(k)
                    .map_err(|e| named("master_key", e.into()))?;
                let arr: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| named("master_key", anyhow!("must decode to exactly 32 bytes")))?;
                Some(arr)
            }
            None => None,
        };
        // An empty schedule (or `none`) is explicit: one attempt, no retries.
        let schedule_text = match map.get("retry_schedule").map(|s| s.trim()) {
            Some("") | Some("none") => "",
            Some(s) => s,
            None => "1m,5m,30m,2h,12h,24h",
        };
        let retry_schedule = parse_list(schedule_text)
            .map(parse_duration)
            .collect::<anyhow::Result<Vec<_>>>()
            .map_err(|e| named("retry_schedule", e))?;
        let duration =
            |k: &str, d: &str| parse_duration(get(k).unwrap_or(d)).map_err(|e| named(k, e));
        let bool_of = |k: &str| -> anyhow::Result<bool> {
            match get(k).unwrap_or("false").to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                other => Err(named(k, anyhow!("expected true or false, got `{other}`"))),
            }
        };
        let cidrs = |k: &str| -> anyhow::Result<Vec<IpNet>> {
            parse_list(get(k).unwrap_or(""))
                .map(parse_cidr)
                .collect::<anyhow::Result<Vec<_>>>()
                .map_err(|e| named(k, e))
        };
        let delivery_timeout = duration("delivery_timeout", "10s")?;
        if delivery_timeout.is_zero() {
            return Err(named("delivery_timeout", anyhow!("must be positive")));
        }
        let max_body =
            parse_size(get("max_body").unwrap_or("1MiB")).map_err(|e| named("max_body", e))?;
        if max_body == 0 {
            return Err(named("max_body", anyhow!("must be positive")));
        }
        Ok(Self {
            listen,
            database_url,
            public_url,
            trusted_proxies: cidrs("trusted_proxies")?,
            admin_token: get("admin_token").map(str::to_owned),
            master_key,
            retry_schedule,
            delivery_timeout,
            allow_http_targets: bool_of("allow_http_targets")?,
            allow_private_targets: cidrs("allow_private_targets")?,
            max_body,
            retention: duration("retention", "30d")?,
            log_format: get("log_format").unwrap_or("text").to_owned(),
            sqlite_busy_timeout: duration("sqlite_busy_timeout", "5s")?,
            poll_interval: duration("poll_interval", "1s")?,
        })
    }

    /// The number of delivery attempts in all (first try + one per scheduled delay).
    pub fn max_attempts(&self) -> u32 {
        self.retry_schedule.len() as u32 + 1
    }
}

fn parse_list(s: &str) -> impl Iterator<Item = &str> {
    s.split(',').map(str::trim).filter(|p| !p.is_empty())
}

/// `10s`, `5m`, `2h`, `30d`, `250ms`, or plain seconds.
pub fn parse_duration(s: &str) -> anyhow::Result<Duration> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    humantime::parse_duration(s).map_err(|e| anyhow!("`{s}`: {e}"))
}

/// `1MiB`, `512KiB`, `1MB`, `2048`.
pub fn parse_size(s: &str) -> anyhow::Result<usize> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| anyhow!("`{s}` is not a size like 1MiB"))?;
    let mult = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => bail!("unknown size unit `{other}`"),
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("`{s}` is too large"))
}

/// A CIDR, or a single address (taken as /32 or /128).
pub fn parse_cidr(s: &str) -> anyhow::Result<IpNet> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    let ip: std::net::IpAddr = s.parse().map_err(|_| anyhow!("`{s}` is not a CIDR"))?;
    Ok(IpNet::from(ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_follow_the_spec() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, "sqlite://hookgate.db");
        assert_eq!(c.public_url, "http://127.0.0.1:8080");
        assert_eq!(c.max_attempts(), 7);
        assert_eq!(c.retry_schedule[0], Duration::from_secs(60));
        assert_eq!(c.max_body, 1 << 20);
        assert_eq!(c.retention, Duration::from_secs(30 * 86400));
        assert!(!c.allow_http_targets);
    }

    #[test]
    fn invalid_values_name_the_key() {
        for (k, v) in [
            ("listen", "nope"),
            ("max_body", "12 parsecs"),
            ("retry_schedule", "1m,soon"),
            ("master_key", "c2hvcnQ="),
            ("allow_private_targets", "10.0.0.0/99"),
            ("allow_http_targets", "maybe"),
            ("public_url", "ftp://x"),
            ("database_url", "mysql://x"),
        ] {
            let err = Config::from_map(&map(&[(k, v)])).unwrap_err().to_string();
            assert!(
                err.contains(&format!("HOOKGATE_{}", k.to_uppercase())),
                "{err}"
            );
        }
    }

    #[test]
    fn sizes_and_cidrs_parse() {
        assert_eq!(parse_size("512KiB").unwrap(), 512 * 1024);
        assert_eq!(parse_size("2048").unwrap(), 2048);
        assert_eq!(parse_cidr("127.0.0.1").unwrap().to_string(), "127.0.0.1/32");
        let c = Config::from_map(&map(&[("public_url", "https://hooks.example.com/")])).unwrap();
        assert_eq!(c.public_url, "https://hooks.example.com");
        let none = Config::from_map(&map(&[("retry_schedule", "none")])).unwrap();
        assert_eq!(none.max_attempts(), 1);
    }
}
