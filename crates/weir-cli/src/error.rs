//! The command line's one error type.

/// Why a command failed. `weir` prints it on one line, its causes joined by `: `.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No broker of `--brokers` answered.
    #[error("cannot connect to {brokers}")]
    Connect {
        /// The bootstrap addresses tried.
        brokers: String,
        /// Why.
        #[source]
        source: weir_client::Error,
    },
    /// A request to the cluster failed.
    #[error("{action}")]
    Client {
        /// What was being done ("cannot create topic orders").
        action: String,
        /// Why.
        #[source]
        source: weir_client::Error,
    },
    /// An argument that parsed but does not make sense together with the others.
    #[error("{0}")]
    Usage(String),
    /// A local file or stream.
    #[error("{action}")]
    Io {
        /// What was being done ("cannot read orders.txt").
        action: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The cluster answered, but not as hoped (an unhealthy broker, a group with members).
    #[error("{0}")]
    Failed(String),
}

impl Error {
    /// The exit status: 2 for arguments that cannot work (as clap's), 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// The error and its causes on one line. A cause whose text the line already ends with is
    /// left out (some errors print their source in their own message).
    pub fn one_line(&self) -> String {
        let mut line = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            let text = c.to_string();
            if !text.is_empty() && !line.ends_with(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            cause = c.source();
        }
        line.replace(['\n', '\r'], " ")
    }
}

/// Adds what was being done to a client error.
pub(crate) trait Context<T> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, Error>;
}

impl<T> Context<T> for Result<T, weir_client::Error> {
    fn context(self, action: impl FnOnce() -> String) -> Result<T, Error> {
        self.map_err(|source| Error::Client {
            action: action(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_join_on_one_line_without_repeats() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let err = Error::Client {
            action: "cannot list topics".into(),
            source: weir_client::Error::Io {
                addr: "h:1".into(),
                source: io,
            },
        };
        assert_eq!(
            err.one_line(),
            "cannot list topics: I/O error talking to h:1: refused"
        );
        assert_eq!(err.exit_code(), 1);
        assert_eq!(Error::Usage("x\ny".into()).one_line(), "x y");
    }
}
