//! Client configuration, with the Java client's property names where one exists.

use crate::error::{Error, Result};
use std::time::Duration;

/// How to reach a cluster and how patiently to talk to it. Shared by producers, consumers and
/// admin clients through [`crate::Client`].
///
/// Build it as a struct (`ClientConfig { bootstrap_servers: .., ..Default::default() }`) or
/// from Java-style properties with [`ClientConfig::set`]. [`crate::Client::connect`] validates
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// `bootstrap.servers`: `host:port` addresses tried in order until one answers.
    pub bootstrap_servers: Vec<String>,
    /// `client.id`: sent in every request header; brokers log it and use it for quotas.
    pub client_id: String,
    /// `request.timeout.ms`: how long to wait for one response (default 30 s).
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms`: how long a TCP connect may take (default 10 s).
    pub connection_setup_timeout: Duration,
    /// `retry.backoff.ms`: the first pause before retrying a failed request (default 100 ms).
    pub retry_backoff: Duration,
    /// `retry.backoff.max.ms`: the longest pause between retries; pauses double up to it
    /// (default 1 s).
    pub retry_backoff_max: Duration,
    /// `reconnect.backoff.ms`: the first pause before reconnecting to a broker (default 50 ms).
    pub reconnect_backoff: Duration,
    /// `reconnect.backoff.max.ms`: the longest pause between reconnects (default 1 s).
    pub reconnect_backoff_max: Duration,
    /// `metadata.max.age.ms`: metadata older than this is refreshed before use, even without
    /// an error pointing at it (default 5 min).
    pub metadata_max_age: Duration,
    /// `weir.max.response.bytes` (no Java equivalent): responses whose size prefix exceeds this
    /// close the connection instead of being buffered (default 100 MiB).
    pub max_response_size: usize,
    /// `allow.auto.create.topics`: whether metadata lookups for a missing topic ask the broker
    /// to create it (it does when its `auto.create.topics.enable` is on; default true).
    pub allow_auto_create_topics: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: vec!["localhost:9092".to_string()],
            client_id: "weir-client".to_string(),
            request_timeout: Duration::from_secs(30),
            connection_setup_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(1),
            reconnect_backoff: Duration::from_millis(50),
            reconnect_backoff_max: Duration::from_secs(1),
            metadata_max_age: Duration::from_secs(300),
            max_response_size: weir_protocol::frame::DEFAULT_MAX_FRAME_SIZE,
            allow_auto_create_topics: true,
        }
    }
}

impl ClientConfig {
    /// The defaults with `bootstrap.servers` set to `servers` (comma-separated or a single
    /// address).
    pub fn new(servers: &str) -> Self {
        Self {
            bootstrap_servers: split_list(servers),
            ..Self::default()
        }
    }

    /// Sets one property by its Java client name. Unknown names and invalid values are
    /// [`Error::Config`].
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Self> {
        match key {
            "bootstrap.servers" => self.bootstrap_servers = split_list(value),
            "client.id" => self.client_id = value.to_string(),
            "request.timeout.ms" => self.request_timeout = millis("request.timeout.ms", value)?,
            "socket.connection.setup.timeout.ms" => {
                self.connection_setup_timeout = millis("socket.connection.setup.timeout.ms", value)?
            }
            "retry.backoff.ms" => self.retry_backoff = millis("retry.backoff.ms", value)?,
            "retry.backoff.max.ms" => {
                self.retry_backoff_max = millis("retry.backoff.max.ms", value)?
            }
            "reconnect.backoff.ms" => {
                self.reconnect_backoff = millis("reconnect.backoff.ms", value)?
            }
            "reconnect.backoff.max.ms" => {
                self.reconnect_backoff_max = millis("reconnect.backoff.max.ms", value)?
            }
            "metadata.max.age.ms" => self.metadata_max_age = millis("metadata.max.age.ms", value)?,
            "weir.max.response.bytes" => {
                self.max_response_size = parse("weir.max.response.bytes", value)?
            }
            "allow.auto.create.topics" => {
                self.allow_auto_create_topics = parse("allow.auto.create.topics", value)?
            }
            _ => {
                return Err(Error::Config {
                    key: "(unknown)",
                    reason: format!("unknown client property {key:?}"),
                });
            }
        }
        Ok(self)
    }

    /// Checks the values against each other and against their ranges.
    pub fn validate(&self) -> Result<()> {
        if self.bootstrap_servers.is_empty() {
            return Err(config_error("bootstrap.servers", "no address given"));
        }
        for server in &self.bootstrap_servers {
            if split_host_port(server).is_none() {
                return Err(config_error(
                    "bootstrap.servers",
                    format!("{server:?} is not host:port"),
                ));
            }
        }
        if self.client_id.len() > i16::MAX as usize {
            return Err(config_error("client.id", "longer than 32767 bytes"));
        }
        for (key, value) in [
            ("request.timeout.ms", self.request_timeout),
            (
                "socket.connection.setup.timeout.ms",
                self.connection_setup_timeout,
            ),
        ] {
            if value.is_zero() {
                return Err(config_error(key, "must be positive"));
            }
        }
        if self.retry_backoff > self.retry_backoff_max {
            return Err(config_error(
                "retry.backoff.ms",
                "larger than retry.backoff.max.ms",
            ));
        }
        if self.reconnect_backoff > self.reconnect_backoff_max {
            return Err(config_error(
                "reconnect.backoff.ms",
                "larger than reconnect.backoff.max.ms",
            ));
        }
        if self.max_response_size < 1024 || self.max_response_size > i32::MAX as usize {
            return Err(config_error(
                "weir.max.response.bytes",
                "must be between 1024 and 2147483647",
            ));
        }
        Ok(())
    }
}

/// A config error for `key`.
pub(crate) fn config_error(key: &'static str, reason: impl Into<String>) -> Error {
    Error::Config {
        key,
        reason: reason.into(),
    }
}

/// Parses a number, naming `key` when it is not one.
pub(crate) fn parse<T: std::str::FromStr>(key: &'static str, value: &str) -> Result<T>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e| config_error(key, format!("{value:?}: {e}")))
}

/// Parses a non-negative number of milliseconds.
pub(crate) fn millis(key: &'static str, value: &str) -> Result<Duration> {
    parse::<u64>(key, value).map(Duration::from_millis)
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Splits `host:port` (or `[v6]:port`).
pub(crate) fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_use_java_names() {
        let mut config = ClientConfig::default();
        config
            .set("bootstrap.servers", "a:1, b:2,")
            .unwrap()
            .set("request.timeout.ms", "1500")
            .unwrap()
            .set("client.id", "app")
            .unwrap();
        assert_eq!(config.bootstrap_servers, ["a:1", "b:2"]);
        assert_eq!(config.request_timeout, Duration::from_millis(1500));
        assert_eq!(config.client_id, "app");
        config.validate().unwrap();
    }

    #[test]
    fn invalid_values_are_config_errors() {
        let mut config = ClientConfig::default();
        let err = config.set("request.timeout.ms", "-5").unwrap_err();
        assert!(matches!(
            err,
            Error::Config {
                key: "request.timeout.ms",
                ..
            }
        ));
        assert!(config.set("no.such.thing", "1").is_err());
        assert!(matches!(
            ClientConfig::new("no-port").validate(),
            Err(Error::Config {
                key: "bootstrap.servers",
                ..
            })
        ));
        assert!(ClientConfig::new("").validate().is_err());
        let config = ClientConfig {
            retry_backoff: Duration::from_secs(5),
            ..ClientConfig::default()
        };
        assert!(config.validate().is_err());
    }

    #[test]
    fn host_port_splits_ipv6() {
        assert_eq!(split_host_port("[::1]:9092"), Some(("::1", 9092)));
        assert_eq!(split_host_port("localhost:9092"), Some(("localhost", 9092)));
        assert_eq!(split_host_port("localhost"), None);
        assert_eq!(split_host_port(":9092"), None);
    }
}
