//! Name rules: lock, queue and owner names are 1..=253 bytes of `[A-Za-z0-9._:-]`, and not dots only.

/// The longest name, in bytes (the length of a DNS name, so names fit in Kubernetes objects and labels of tools).
pub const MAX_NAME_LEN: usize = 253;

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name is empty.
    Empty,
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    TooLong(usize),
    /// The name contains a byte outside `[A-Za-z0-9._:-]`.
    BadChar(char),
    /// The name is only dots: `.` and `..` are path segments URLs resolve away, so no client could address them.
    OnlyDots,
}

impl std::fmt::Display for NameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NameError::Empty => write!(f, "must not be empty"),
            NameError::TooLong(n) => write!(f, "is {n} bytes long, the limit is {MAX_NAME_LEN}"),
            NameError::OnlyDots => write!(f, "must not consist of dots only"),
            NameError::BadChar(c) => {
                write!(
                    f,
                    "contains {c:?}; only letters, digits and . _ : - are allowed"
                )
            }
        }
    }
}

impl std::error::Error for NameError {}

/// Checks a lock, queue or owner name.
pub fn validate_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if name.bytes().all(|b| b == b'.') {
        return Err(NameError::OnlyDots);
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        Some(c) => Err(NameError::BadChar(c)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet() {
        assert_eq!(validate_name("a"), Ok(()));
        assert_eq!(validate_name("Orders-2024.v1:shard_7"), Ok(()));
        assert_eq!(validate_name(&"x".repeat(MAX_NAME_LEN)), Ok(()));
    }

    #[test]
    fn refuses_bad_names() {
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(
            validate_name(&"x".repeat(254)),
            Err(NameError::TooLong(254))
        );
        assert_eq!(validate_name("a/b"), Err(NameError::BadChar('/')));
        assert_eq!(validate_name("a b"), Err(NameError::BadChar(' ')));
        assert_eq!(validate_name("é"), Err(NameError::BadChar('é')));
        assert_eq!(validate_name("."), Err(NameError::OnlyDots));
        assert_eq!(validate_name(".."), Err(NameError::OnlyDots));
        assert_eq!(validate_name("..a"), Ok(()));
    }
}
