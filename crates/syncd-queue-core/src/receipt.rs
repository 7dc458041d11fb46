//! The receipt of one delivery.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::MessageId;

/// Receipt of one delivery: the message and the lsn of the `Deliver` record that delivered it.
///
/// Its text form is `"<id>-<delivery>"`, both in canonical decimal (no sign, no leading zero), e.g. `"17-42"`.
/// [`Display`](fmt::Display) and [`FromStr`] round-trip, and every text `FromStr` accepts is the `Display` form of
/// its receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Receipt {
    /// The message delivered.
    pub id: MessageId,
    /// The lsn of the `Deliver` record that delivered it.
    pub delivery: u64,
}

impl fmt::Display for Receipt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.id, self.delivery)
    }
}

/// Why a text is not a receipt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseReceiptError {
    /// Not `"<id>-<delivery>"` in canonical decimal: a missing or extra `-`, an empty part, a sign, a leading
    /// zero, or a character that is not an ASCII digit.
    Format,
    /// A part does not fit in a `u64`.
    OutOfRange,
}

impl fmt::Display for ParseReceiptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseReceiptError::Format => {
                f.write_str("a receipt is \"<id>-<delivery>\" in decimal, e.g. \"17-42\"")
            }
            ParseReceiptError::OutOfRange => f.write_str("a receipt part is out of range"),
        }
    }
}

impl std::error::Error for ParseReceiptError {}

/// One canonical decimal `u64`: ASCII digits only, no leading zero unless it is `"0"`.
fn parse_part(part: &str) -> Result<u64, ParseReceiptError> {
    let canonical = !part.is_empty()
        && part.bytes().all(|b| b.is_ascii_digit())
        && (part == "0" || !part.starts_with('0'));
    if !canonical {
        return Err(ParseReceiptError::Format);
    }
    // Only digits remain, so the only possible failure is overflow.
    part.parse::<u64>()
        .map_err(|_| ParseReceiptError::OutOfRange)
}

impl FromStr for Receipt {
    type Err = ParseReceiptError;

    fn from_str(s: &str) -> Result<Receipt, ParseReceiptError> {
        let (id, delivery) = s.split_once('-').ok_or(ParseReceiptError::Format)?;
        // A second '-' (in `delivery`) is not a digit, so parse_part rejects it.
        Ok(Receipt {
            id: parse_part(id)?,
            delivery: parse_part(delivery)?,
        })
    }
}
