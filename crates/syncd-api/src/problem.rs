//! Problem details (RFC 9457) with a stable machine-readable `code` member.

use serde::{Deserialize, Serialize};

/// Media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The stable error codes of the API. Each maps to one HTTP status; clients branch on the code, not on `detail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: the request is malformed or a field is out of range.
    InvalidRequest,
    /// 404: the resource does not exist.
    NotFound,
    /// 404: the owner does not hold the lock.
    NotHeld,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 409: the lock was not granted within `wait_ms`.
    LockConflict,
    /// 409: waiting would close a cycle in the wait-for graph; the requester is the victim.
    Deadlock,
    /// 409: the fencing token is not the one the owner holds.
    StaleToken,
    /// 413: the body is over the configured limit.
    TooLarge,
    /// 415: the body is not JSON.
    UnsupportedMediaType,
    /// 503: the service cannot answer now (no leader, not ready, shutting down); retry.
    Unavailable,
    /// 504: the request did not finish within the server's time limit.
    Timeout,
    /// 500: a bug or an unexpected storage failure; details are in the server log, never in the response.
    Internal,
}

impl ErrorCode {
    /// The HTTP status this code is always sent with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::NotFound | ErrorCode::NotHeld => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::LockConflict | ErrorCode::Deadlock | ErrorCode::StaleToken => 409,
            ErrorCode::TooLarge => 413,
            ErrorCode::UnsupportedMediaType => 415,
            ErrorCode::Unavailable => 503,
            ErrorCode::Timeout => 504,
            ErrorCode::Internal => 500,
        }
    }

    /// The code as it appears on the wire, e.g. `lock_conflict`; also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::NotFound => "not_found",
            ErrorCode::NotHeld => "not_held",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::LockConflict => "lock_conflict",
            ErrorCode::Deadlock => "deadlock",
            ErrorCode::StaleToken => "stale_token",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Internal => "internal",
        }
    }

    /// A short human-readable summary that does not change between occurrences.
    pub fn title(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "Invalid request",
            ErrorCode::NotFound => "Not found",
            ErrorCode::NotHeld => "Lock not held",
            ErrorCode::MethodNotAllowed => "Method not allowed",
            ErrorCode::LockConflict => "Lock conflict",
            ErrorCode::Deadlock => "Deadlock",
            ErrorCode::StaleToken => "Stale fencing token",
            ErrorCode::TooLarge => "Payload too large",
            ErrorCode::UnsupportedMediaType => "Unsupported media type",
            ErrorCode::Unavailable => "Service unavailable",
            ErrorCode::Timeout => "Request timed out",
            ErrorCode::Internal => "Internal error",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An `application/problem+json` body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// Always `about:blank`: the `code` member carries the meaning.
    #[serde(rename = "type")]
    pub kind: String,
    /// The code's fixed title.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// The stable machine-readable code.
    pub code: ErrorCode,
    /// What went wrong with this request, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    /// A problem with the code's status and title and the given detail.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank".to_owned(),
            title: code.title().to_owned(),
            status: code.status(),
            code,
            detail: Some(detail.into()),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.title, self.code)?;
        if let Some(detail) = &self.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problem_serializes_with_rfc9457_members() {
        let p = Problem::new(ErrorCode::Deadlock, "cycle");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "about:blank");
        assert_eq!(v["status"], 409);
        assert_eq!(v["code"], "deadlock");
        assert_eq!(v["title"], "Deadlock");
        assert_eq!(v["detail"], "cycle");
    }

    #[test]
    fn code_strings_match_serde() {
        for code in [
            ErrorCode::InvalidRequest,
            ErrorCode::NotFound,
            ErrorCode::NotHeld,
            ErrorCode::MethodNotAllowed,
            ErrorCode::LockConflict,
            ErrorCode::Deadlock,
            ErrorCode::StaleToken,
            ErrorCode::TooLarge,
            ErrorCode::UnsupportedMediaType,
            ErrorCode::Unavailable,
            ErrorCode::Timeout,
            ErrorCode::Internal,
        ] {
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, code.as_str());
        }
    }
}
