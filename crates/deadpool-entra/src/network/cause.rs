//! What ended a connection, or failed a login, at the network level: the one place that
//! reads a `tokio_postgres::Error` for it, so that the connection task, the login path
//! and the liveness check agree.

use std::io;

/// Why a connection was found dead (or a login could not reach the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum DeadCause {
    /// Sent data stayed unacknowledged (`tcp_user_timeout`), keepalive probes went
    /// unanswered, or a connect timed out: the peer vanished or the path drops packets.
    Timeout,
    /// Reset, aborted, refused, or closed mid-message by the peer or a middlebox.
    Reset,
    /// A liveness check before a checkout got no answer in time.
    LivenessCheck,
    /// A login reached a server that does not accept writes while
    /// `target_session_attrs=read-write` asks for one (a demoted primary, a replica
    /// behind a stale DNS answer).
    ReadOnly,
    /// Any other I/O failure.
    Other,
}

impl DeadCause {
    /// The label used in stats, metrics and logs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::LivenessCheck => "liveness_check",
            Self::ReadOnly => "read_only",
            Self::Other => "other",
        }
    }

    fn of_io(e: &io::Error) -> Self {
        use io::ErrorKind::*;
        match e.kind() {
            TimedOut | WouldBlock => Self::Timeout,
            ConnectionReset | ConnectionAborted | ConnectionRefused | BrokenPipe
            | UnexpectedEof | NotConnected => Self::Reset,
            _ if e.to_string().contains("does not allow writes") => Self::ReadOnly,
            _ => Self::Other,
        }
    }
}

/// The network cause of `e`, or `None` when `e` is not a network failure (a server's
/// error answer, a TLS failure, a token or configuration problem).
pub(crate) fn network_cause(e: &tokio_postgres::Error) -> Option<DeadCause> {
    if e.as_db_error().is_some() {
        return None;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut found = None;
    while let Some(err) = cur {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return None;
        }
        if let Some(io) = err.downcast_ref::<io::Error>() {
            if io
                .get_ref()
                .is_some_and(|i| i.downcast_ref::<rustls::Error>().is_some())
            {
                return None;
            }
            found.get_or_insert(DeadCause::of_io(io));
        }
        cur = err.source();
    }
    found.or_else(|| {
        let text = e.to_string();
        (text.contains("timed out") || text.contains("timeout")).then_some(DeadCause::Timeout)
    })
}

#[cfg(test)]
mod tests {
    use std::io;

    use super::DeadCause;

    #[test]
    fn io_errors_map_to_causes() {
        let c = |k: io::ErrorKind| DeadCause::of_io(&io::Error::from(k));
        assert_eq!(c(io::ErrorKind::TimedOut), DeadCause::Timeout);
        assert_eq!(c(io::ErrorKind::ConnectionReset), DeadCause::Reset);
        assert_eq!(c(io::ErrorKind::ConnectionRefused), DeadCause::Reset);
        assert_eq!(c(io::ErrorKind::BrokenPipe), DeadCause::Reset);
        assert_eq!(c(io::ErrorKind::UnexpectedEof), DeadCause::Reset);
        assert_eq!(c(io::ErrorKind::PermissionDenied), DeadCause::Other);
        let ro = io::Error::other("database does not allow writes");
        assert_eq!(DeadCause::of_io(&ro), DeadCause::ReadOnly);
    }

    #[test]
    fn labels_are_distinct() {
        let all = [
            DeadCause::Timeout,
            DeadCause::Reset,
            DeadCause::LivenessCheck,
            DeadCause::ReadOnly,
            DeadCause::Other,
        ];
        let labels: std::collections::HashSet<_> = all.iter().map(|c| c.as_str()).collect();
        assert_eq!(labels.len(), all.len());
    }

    #[test]
    fn a_server_answer_or_a_config_error_is_not_a_network_failure() {
        let config_error = "nonsense_option=1"
            .parse::<tokio_postgres::Config>()
            .expect_err("unknown option");
        assert_eq!(super::network_cause(&config_error), None);
    }
}
