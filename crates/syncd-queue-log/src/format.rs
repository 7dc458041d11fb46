//! The on-disk format of a shard log: pure encoding and decoding, no I/O.
//!
//! A log is a directory of segment files named `<first lsn, 20 digits zero padded>.seg`
//! ([`segment_file_name`]). Each segment starts with the 8-byte [`SEGMENT_MAGIC`] and continues with records,
//! back to back:
//!
//! ```text
//! len: u32 LE | crc: u32 LE | lsn: u64 LE | term: u64 LE | payload (len bytes)
//! ```
//!
//! `len` is the payload length, at most [`MAX_PAYLOAD_LEN`]; `crc` is CRC-32 (IEEE, the `crc32fast` crate) over
//! the lsn, term and payload bytes exactly as stored ([`checksum`]).

use thiserror::Error;

/// The first 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SYNCDQL1";

/// Length of the segment header (the magic), in bytes.
pub const SEGMENT_HEADER_LEN: u64 = SEGMENT_MAGIC.len() as u64;

/// Length of a record header (`len`, `crc`, `lsn`, `term`), in bytes.
pub const RECORD_HEADER_LEN: usize = 24;

/// The largest payload a record may hold (64 MiB). A larger length field is damage, not a record.
pub const MAX_PAYLOAD_LEN: u32 = 64 << 20;

/// Suffix of segment file names.
pub const SEGMENT_SUFFIX: &str = ".seg";

/// A format violation found while decoding.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FormatError {
    /// The segment does not start with [`SEGMENT_MAGIC`].
    #[error("bad segment magic {found:02x?}")]
    BadMagic {
        /// The bytes found instead.
        found: Vec<u8>,
    },
    /// A length field larger than [`MAX_PAYLOAD_LEN`].
    #[error("record payload length {len} exceeds the maximum {MAX_PAYLOAD_LEN}")]
    LengthTooLarge {
        /// The length found (or requested, when encoding).
        len: u64,
    },
    /// The stored CRC does not match the record's bytes.
    #[error("CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch {
        /// CRC stored in the record header.
        stored: u32,
        /// CRC computed over the record's lsn, term and payload.
        computed: u32,
    },
}

/// The file name of the segment whose first record has lsn `first_lsn`.
pub fn segment_file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}{SEGMENT_SUFFIX}")
}

/// The first lsn encoded in a segment file name, or `None` if `name` is not a segment file name.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(SEGMENT_SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Checks a segment header. `bytes` must hold at least [`SEGMENT_HEADER_LEN`] bytes; only those are looked at.
pub fn check_segment_header(bytes: &[u8]) -> Result<(), FormatError> {
    let head = bytes.get(..SEGMENT_MAGIC.len()).unwrap_or(bytes);
    if head == SEGMENT_MAGIC {
        Ok(())
    } else {
        Err(FormatError::BadMagic {
            found: head.to_vec(),
        })
    }
}

/// Size on disk of a record with a payload of `payload_len` bytes.
pub fn record_len(payload_len: usize) -> u64 {
    RECORD_HEADER_LEN as u64 + payload_len as u64
}

/// The record CRC: CRC-32 over `lsn` and `term` (little endian) followed by `payload`.
pub fn checksum(lsn: u64, term: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&lsn.to_le_bytes());
    hasher.update(&term.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

/// Checks that a payload of `len` bytes may be stored in a record.
pub fn check_payload_len(len: usize) -> Result<(), FormatError> {
    if len as u64 > u64::from(MAX_PAYLOAD_LEN) {
        Err(FormatError::LengthTooLarge { len: len as u64 })
    } else {
        Ok(())
    }
}

/// Appends the encoding of one record to `out`. Fails (leaving `out` untouched) if the payload is too large.
pub fn encode_record(
    out: &mut Vec<u8>,
    lsn: u64,
    term: u64,
    payload: &[u8],
) -> Result<(), FormatError> {
    check_payload_len(payload.len())?;
    let len = u32::try_from(payload.len()).map_err(|_| FormatError::LengthTooLarge {
        len: payload.len() as u64,
    })?;
    out.reserve(RECORD_HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&checksum(lsn, term, payload).to_le_bytes());
    out.extend_from_slice(&lsn.to_le_bytes());
    out.extend_from_slice(&term.to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    /// Payload length.
    pub len: u32,
    /// Stored CRC.
    pub crc: u32,
    /// Log sequence number.
    pub lsn: u64,
    /// Term.
    pub term: u64,
}

impl RecordHeader {
    /// Decodes a record header. Does not validate anything; see [`RecordHeader::check_len`] and
    /// [`RecordHeader::verify`].
    pub fn decode(bytes: &[u8; RECORD_HEADER_LEN]) -> RecordHeader {
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        RecordHeader {
            len: u32_at(0),
            crc: u32_at(4),
            lsn: u64_at(8),
            term: u64_at(16),
        }
    }

    /// Rejects absurd lengths (above [`MAX_PAYLOAD_LEN`]) before anything is allocated for the payload.
    pub fn check_len(&self) -> Result<(), FormatError> {
        if self.len > MAX_PAYLOAD_LEN {
            Err(FormatError::LengthTooLarge {
                len: u64::from(self.len),
            })
        } else {
            Ok(())
        }
    }

    /// Size on disk of the whole record (header and payload).
    pub fn record_len(&self) -> u64 {
        RECORD_HEADER_LEN as u64 + u64::from(self.len)
    }

    /// Checks the CRC against `payload`.
    pub fn verify(&self, payload: &[u8]) -> Result<(), FormatError> {
        let computed = checksum(self.lsn, self.term, payload);
        if computed == self.crc {
            Ok(())
        } else {
            Err(FormatError::CrcMismatch {
                stored: self.crc,
                computed,
            })
        }
    }
}

/// A record decoded from a byte slice, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Log sequence number.
    pub lsn: u64,
    /// Term.
    pub term: u64,
    /// Payload bytes.
    pub payload: &'a [u8],
}

/// The outcome of [`decode_record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A complete, valid record occupying the first `len` bytes.
    Record {
        /// The record.
        record: RecordRef<'a>,
        /// Bytes consumed.
        len: usize,
    },
    /// The slice ends before the record does (a partial header or payload).
    Incomplete,
    /// The bytes are not a valid record.
    Invalid(FormatError),
}

/// Decodes the record at the start of `buf`.
///
/// A length field above [`MAX_PAYLOAD_LEN`] is [`Decoded::Invalid`] as soon as the header is complete, however
/// short `buf` is.
pub fn decode_record(buf: &[u8]) -> Decoded<'_> {
    let Some(head) = buf.first_chunk::<RECORD_HEADER_LEN>() else {
        return Decoded::Incomplete;
    };
    let header = RecordHeader::decode(head);
    if let Err(e) = header.check_len() {
        return Decoded::Invalid(e);
    }
    let end = RECORD_HEADER_LEN + header.len as usize;
    let Some(payload) = buf.get(RECORD_HEADER_LEN..end) else {
        return Decoded::Incomplete;
    };
    match header.verify(payload) {
        Ok(()) => Decoded::Record {
            record: RecordRef {
                lsn: header.lsn,
                term: header.term,
                payload,
            },
            len: end,
        },
        Err(e) => Decoded::Invalid(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(lsn: u64, term: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(&mut out, lsn, term, payload).unwrap();
        out
    }

    #[test]
    fn record_round_trip() {
        let mut buf = Vec::new();
        let records: Vec<(u64, u64, Vec<u8>)> = vec![
            (1, 1, b"hello".to_vec()),
            (2, 1, Vec::new()),
            (7, 3, vec![0xAB; 1000]),
            (u64::MAX, u64::MAX, vec![0, 1, 2]),
        ];
        for (lsn, term, payload) in &records {
            encode_record(&mut buf, *lsn, *term, payload).unwrap();
        }
        let mut rest = &buf[..];
        for (lsn, term, payload) in &records {
            match decode_record(rest) {
                Decoded::Record { record, len } => {
                    assert_eq!(record.lsn, *lsn);
                    assert_eq!(record.term, *term);
                    assert_eq!(record.payload, &payload[..]);
                    assert_eq!(len as u64, record_len(payload.len()));
                    rest = &rest[len..];
                }
                other => panic!("expected a record, got {other:?}"),
            }
        }
        assert!(rest.is_empty());
        assert_eq!(decode_record(rest), Decoded::Incomplete);
    }

    #[test]
    fn layout_is_little_endian_with_crc_over_lsn_term_payload() {
        let rec = encoded(0x0102_0304_0506_0708, 9, b"xy");
        assert_eq!(&rec[0..4], &2u32.to_le_bytes());
        assert_eq!(&rec[8..16], &0x0102_0304_0506_0708u64.to_le_bytes());
        assert_eq!(&rec[16..24], &9u64.to_le_bytes());
        assert_eq!(&rec[24..], b"xy");
        let crc = crc32fast::hash(&rec[8..]);
        assert_eq!(&rec[4..8], &crc.to_le_bytes());
    }

    #[test]
    fn every_prefix_is_incomplete() {
        let rec = encoded(5, 2, b"some payload bytes");
        for cut in 0..rec.len() {
            assert_eq!(
                decode_record(&rec[..cut]),
                Decoded::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn any_flipped_byte_is_detected() {
        let rec = encoded(5, 2, b"some payload bytes");
        for i in 0..rec.len() {
            let mut bad = rec.clone();
            bad[i] ^= 0x01;
            match decode_record(&bad) {
                Decoded::Invalid(_) | Decoded::Incomplete => {}
                Decoded::Record { .. } => panic!("flip at byte {i} went unnoticed"),
            }
        }
    }

    #[test]
    fn absurd_length_is_invalid_without_the_payload() {
        let mut rec = encoded(1, 1, b"x");
        rec[0..4].copy_from_slice(&(MAX_PAYLOAD_LEN + 1).to_le_bytes());
        assert_eq!(
            decode_record(&rec),
            Decoded::Invalid(FormatError::LengthTooLarge {
                len: u64::from(MAX_PAYLOAD_LEN) + 1
            })
        );
        rec[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode_record(&rec),
            Decoded::Invalid(FormatError::LengthTooLarge { .. })
        ));
    }

    #[test]
    fn crc_mismatch_is_reported() {
        let mut rec = encoded(1, 1, b"abc");
        let last = rec.len() - 1;
        rec[last] ^= 0xFF;
        assert!(matches!(
            decode_record(&rec),
            Decoded::Invalid(FormatError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn oversized_payload_is_refused_when_encoding() {
        assert!(check_payload_len(MAX_PAYLOAD_LEN as usize).is_ok());
        assert_eq!(
            check_payload_len(MAX_PAYLOAD_LEN as usize + 1),
            Err(FormatError::LengthTooLarge {
                len: u64::from(MAX_PAYLOAD_LEN) + 1
            })
        );
    }

    #[test]
    fn segment_names() {
        assert_eq!(segment_file_name(42), "00000000000000000042.seg");
        assert_eq!(segment_file_name(u64::MAX), "18446744073709551615.seg");
        assert_eq!(
            parse_segment_file_name("00000000000000000042.seg"),
            Some(42)
        );
        assert_eq!(
            parse_segment_file_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_file_name("42.seg"), None);
        assert_eq!(parse_segment_file_name("00000000000000000042.tmp"), None);
        assert_eq!(parse_segment_file_name("0000000000000000004x.seg"), None);
        assert_eq!(parse_segment_file_name("99999999999999999999.seg"), None);
        // Lexicographic order of names is lsn order.
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn segment_header() {
        assert!(check_segment_header(&SEGMENT_MAGIC).is_ok());
        assert!(check_segment_header(b"SYNCDQL2").is_err());
        assert!(check_segment_header(b"SYN").is_err());
    }
}
