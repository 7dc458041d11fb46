//! [`ClientError`]: everything a call can fail with, and how to tell which failures are worth a retry.

use syncd_api::{ErrorCode, Problem};

/// At most this many characters of an unexpected body are shown by `Display` (the error keeps all of it).
const EXCERPT_CHARS: usize = 200;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with an `application/problem+json` error; branch on [`Problem::code`].
    #[error("{0}")]
    Api(Problem),
    /// The server answered with a non-2xx status whose body is not a problem (e.g. a proxy's error page).
    #[error("unexpected HTTP status {status}: {}", excerpt(body))]
    UnexpectedStatus {
        /// The HTTP status.
        status: u16,
        /// The body, decoded lossily as UTF-8.
        body: String,
    },
    /// The request did not complete: connect failure, timeout, connection reset, unreadable body.
    #[error("transport: {0}")]
    Transport(#[from] reqwest::Error),
    /// The server answered 2xx but the body is not the expected JSON.
    #[error("decode: {0}")]
    Decode(String),
    /// The request URL could not be built: the base URL does not parse as an `http(s)` URL, or a lock name is
    /// `.` or `..`, which URL parsers turn into path navigation and so cannot be sent as a path segment.
    #[error("invalid URL: {0}")]
    InvalidUrl(String),
}

impl ClientError {
    /// The error for a non-2xx answer: [`ClientError::Api`] when `body` is a problem, else
    /// [`ClientError::UnexpectedStatus`]. Useful with [`Client::post_raw`](crate::Client::post_raw).
    pub fn from_response(status: u16, body: &[u8]) -> ClientError {
        match serde_json::from_slice::<Problem>(body) {
            Ok(problem) => ClientError::Api(problem),
            Err(_) => ClientError::UnexpectedStatus {
                status,
                body: String::from_utf8_lossy(body).into_owned(),
            },
        }
    }

    /// The API error code, when the server answered with a problem.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Api(problem) => Some(problem.code),
            _ => None,
        }
    }

    /// Whether the same call may succeed if sent again later: transport failures (except a request that could
    /// not even be built) and 503 (`unavailable`, or a bare 503 from something in front of the server).
    ///
    /// After a transport failure the server may or may not have applied the call. Acquire and renew are safe to
    /// repeat (the same owner acquiring again gets the same token); a repeated release may answer `not_held`.
    pub fn is_retryable(&self) -> bool {
        match self {
            ClientError::Transport(e) => !e.is_builder(),
            ClientError::Api(problem) => problem.code == ErrorCode::Unavailable,
            ClientError::UnexpectedStatus { status, .. } => *status == 503,
            ClientError::Decode(_) | ClientError::InvalidUrl(_) => false,
        }
    }
}

/// The first [`EXCERPT_CHARS`] characters of `body`, marked when cut.
fn excerpt(body: &str) -> String {
    match body.char_indices().nth(EXCERPT_CHARS) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_body_is_an_api_error() {
        let body = br#"{"type":"about:blank","title":"Deadlock","status":409,"code":"deadlock","detail":"cycle a -> b -> a"}"#;
        let err = ClientError::from_response(409, body);
        assert_eq!(err.code(), Some(ErrorCode::Deadlock));
        assert!(!err.is_retryable());
        match &err {
            ClientError::Api(p) => {
                assert_eq!(p.status, 409);
                assert_eq!(p.detail.as_deref(), Some("cycle a -> b -> a"));
            }
            other => panic!("expected Api, got {other:?}"),
        }
        assert_eq!(err.to_string(), "Deadlock (deadlock): cycle a -> b -> a");
    }

    #[test]
    fn unavailable_is_retryable() {
        let body = br#"{"type":"about:blank","title":"Service unavailable","status":503,"code":"unavailable"}"#;
        let err = ClientError::from_response(503, body);
        assert_eq!(err.code(), Some(ErrorCode::Unavailable));
        assert!(err.is_retryable());
    }

    #[test]
    fn non_problem_bodies_are_unexpected_status() {
        let html = ClientError::from_response(502, b"<html>Bad Gateway</html>");
        assert!(
            matches!(&html, ClientError::UnexpectedStatus { status: 502, body } if body == "<html>Bad Gateway</html>")
        );
        assert_eq!(html.code(), None);
        assert!(!html.is_retryable());

        // JSON, but not a problem (no `code`), and an unknown code: both unexpected.
        let json = ClientError::from_response(400, br#"{"error":"nope"}"#);
        assert!(matches!(
            json,
            ClientError::UnexpectedStatus { status: 400, .. }
        ));
        let unknown = ClientError::from_response(
            418,
            br#"{"type":"about:blank","title":"x","status":418,"code":"teapot"}"#,
        );
        assert!(matches!(
            unknown,
            ClientError::UnexpectedStatus { status: 418, .. }
        ));

        // A bare 503 from a proxy is worth a retry; invalid UTF-8 is kept lossily.
        let bare = ClientError::from_response(503, b"\xffdown");
        assert!(bare.is_retryable());
        assert!(
            matches!(&bare, ClientError::UnexpectedStatus { body, .. } if body == "\u{fffd}down")
        );
    }

    #[test]
    fn long_bodies_are_cut_in_display() {
        let err = ClientError::from_response(500, "é".repeat(1000).as_bytes());
        let shown = err.to_string();
        assert!(shown.ends_with('…'));
        assert_eq!(shown.chars().filter(|c| *c == 'é').count(), EXCERPT_CHARS);
        assert!(
            matches!(err, ClientError::UnexpectedStatus { body, .. } if body.chars().count() == 1000)
        );
    }

    #[test]
    fn local_errors_are_not_retryable() {
        assert!(!ClientError::Decode("x".into()).is_retryable());
        assert!(!ClientError::InvalidUrl("x".into()).is_retryable());
    }
}
