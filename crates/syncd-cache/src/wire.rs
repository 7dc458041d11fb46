//! The peer protocol's bodies: a small JSON header, then the key and the value as raw bytes.
//!
//! Frame layout: `[u32 BE header length][header JSON][u32 BE key length][key][value]`. Keys may be any bytes and
//! values up to megabytes, so neither goes through JSON. In the header a value's place holds `true` when the value
//! follows the key, and `null` when there is none (an empty value and no value differ).

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use syncd_cache_core::{ProbeAnswer, Reply, Request};

/// A frame that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cache frame: {0}")]
pub struct FrameError(pub String);

/// Encodes a frame.
pub fn encode<H: Serialize>(header: &H, key: &[u8], value: Option<&Bytes>) -> Bytes {
    let json = serde_json::to_vec(header).unwrap_or_default();
    let value_len = value.map_or(0, Bytes::len);
    let mut out = BytesMut::with_capacity(8 + json.len() + key.len() + value_len);
    out.put_u32(json.len() as u32);
    out.put_slice(&json);
    out.put_u32(key.len() as u32);
    out.put_slice(key);
    if let Some(value) = value {
        out.put_slice(value);
    }
    out.freeze()
}

/// Decodes a frame into its header, key and the bytes after the key (the value, when the header says so).
pub fn decode<H: DeserializeOwned>(mut frame: Bytes) -> Result<(H, Bytes, Bytes), FrameError> {
    let header_len = take_len(&mut frame, "header")?;
    let header: H = serde_json::from_slice(&frame.split_to(header_len))
        .map_err(|e| FrameError(format!("header: {e}")))?;
    let key_len = take_len(&mut frame, "key")?;
    let key = frame.split_to(key_len);
    Ok((header, key, frame))
}

fn take_len(frame: &mut Bytes, what: &str) -> Result<usize, FrameError> {
    if frame.remaining() < 4 {
        return Err(FrameError(format!("no {what} length")));
    }
    let len = frame.get_u32() as usize;
    if frame.remaining() < len {
        return Err(FrameError(format!("{what} cut short")));
    }
    Ok(len)
}

/// Sent with every request and probe: who is asking, as which incarnation, under which membership view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sender {
    /// Node id.
    pub id: u64,
    /// Incarnation (changes on every start).
    pub inc: u64,
    /// Fingerprint of the sender's membership view.
    pub view: u64,
}

/// `POST /internal/cache/request`: a peer's request to a key's home. The value (write, write-back) follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestHeader {
    /// The requester.
    pub from: Sender,
    /// The request, its value carried after the key.
    pub request: Request<bool>,
}

/// Why a home did not run a request; the requester refreshes its view and asks again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The home sees another membership view (its fingerprint).
    WrongView {
        /// The home's view.
        view: u64,
    },
    /// This node is not the key's home in its view.
    NotHome,
    /// This node became the key's home too recently: leases granted by a previous home may still run.
    Warming,
}

/// The home's answer to a request. A fill's value follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplyHeader {
    /// The request ran.
    Reply(Reply<bool>),
    /// The request did not run.
    Refused(Refusal),
}

/// `POST /internal/cache/probe`: a home's probe about a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProbeHeader {
    /// The home.
    pub from: Sender,
    /// The probe.
    pub probe: syncd_cache_core::Probe,
}

/// The answer to a probe, with the answering incarnation. A `Data` answer's value follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerHeader {
    /// The holder's incarnation.
    pub inc: u64,
    /// The answer.
    pub answer: ProbeAnswer<bool>,
}

/// `GET /internal/cache/ping`: who answers there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// Node id.
    pub id: u64,
    /// Incarnation.
    pub inc: u64,
    /// Fingerprint of its membership view.
    pub view: u64,
}

/// Splits a request into its header part and value.
pub fn split_request(request: Request<Bytes>) -> (Request<bool>, Option<Bytes>) {
    match request {
        Request::Read => (Request::Read, None),
        Request::Write { value } => (
            Request::Write {
                value: value.as_ref().map(|_| true),
            },
            value,
        ),
        Request::WriteBack { grant, value } => (
            Request::WriteBack {
                grant,
                value: value.as_ref().map(|_| true),
            },
            value,
        ),
    }
}

/// Puts a request back together.
pub fn join_request(request: Request<bool>, value: Bytes) -> Request<Bytes> {
    match request {
        Request::Read => Request::Read,
        Request::Write { value: v } => Request::Write {
            value: v.map(|_| value),
        },
        Request::WriteBack { grant, value: v } => Request::WriteBack {
            grant,
            value: v.map(|_| value),
        },
    }
}

/// Splits a reply into its header part and value.
pub fn split_reply(reply: Reply<Bytes>) -> (Reply<bool>, Option<Bytes>) {
    match reply {
        Reply::Fill {
            grant,
            state,
            value,
        } => (
            Reply::Fill {
                grant,
                state,
                value: value.as_ref().map(|_| true),
            },
            value,
        ),
        Reply::Granted { grant, state } => (Reply::Granted { grant, state }, None),
        Reply::Deleted { txn } => (Reply::Deleted { txn }, None),
        Reply::WrittenBack => (Reply::WrittenBack, None),
        Reply::Stale => (Reply::Stale, None),
    }
}

/// Puts a reply back together.
pub fn join_reply(reply: Reply<bool>, value: Bytes) -> Reply<Bytes> {
    match reply {
        Reply::Fill {
            grant,
            state,
            value: v,
        } => Reply::Fill {
            grant,
            state,
            value: v.map(|_| value),
        },
        Reply::Granted { grant, state } => Reply::Granted { grant, state },
        Reply::Deleted { txn } => Reply::Deleted { txn },
        Reply::WrittenBack => Reply::WrittenBack,
        Reply::Stale => Reply::Stale,
    }
}

/// Splits a probe answer into its header part and value.
pub fn split_answer(answer: ProbeAnswer<Bytes>) -> (ProbeAnswer<bool>, Option<Bytes>) {
    match answer {
        ProbeAnswer::NotHeld => (ProbeAnswer::NotHeld, None),
        ProbeAnswer::Dropped => (ProbeAnswer::Dropped, None),
        ProbeAnswer::Data { value, dirty, kept } => (
            ProbeAnswer::Data {
                value: true,
                dirty,
                kept,
            },
            Some(value),
        ),
    }
}

/// Puts a probe answer back together.
pub fn join_answer(answer: ProbeAnswer<bool>, value: Bytes) -> ProbeAnswer<Bytes> {
    match answer {
        ProbeAnswer::NotHeld => ProbeAnswer::NotHeld,
        ProbeAnswer::Dropped => ProbeAnswer::Dropped,
        ProbeAnswer::Data { dirty, kept, .. } => ProbeAnswer::Data { value, dirty, kept },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syncd_cache_core::LineState;

    #[test]
    fn frames_round_trip_any_key_and_value_bytes() {
        let key = Bytes::from_static(b"\x00\xffkey with spaces/and%slashes");
        let value = Bytes::from_static(b"\x00\x01 raw value");
        let (header, v) = split_request(Request::Write {
            value: Some(value.clone()),
        });
        let frame = encode(
            &RequestHeader {
                from: Sender {
                    id: 1,
                    inc: 2,
                    view: 3,
                },
                request: header,
            },
            &key,
            v.as_ref(),
        );
        let (h, k, rest): (RequestHeader, _, _) = decode(frame).unwrap();
        assert_eq!(k, key);
        assert_eq!(
            join_request(h.request, rest),
            Request::Write { value: Some(value) }
        );
    }

    #[test]
    fn an_empty_value_is_not_a_missing_value() {
        let (header, v) = split_reply(Reply::Fill {
            grant: 1,
            state: LineState::E,
            value: Some(Bytes::new()),
        });
        let frame = encode(&ReplyHeader::Reply(header), b"k", v.as_ref());
        let (h, _, rest): (ReplyHeader, _, _) = decode(frame).unwrap();
        let ReplyHeader::Reply(reply) = h else {
            panic!("not a reply")
        };
        assert_eq!(
            join_reply(reply, rest),
            Reply::Fill {
                grant: 1,
                state: LineState::E,
                value: Some(Bytes::new())
            }
        );
    }

    #[test]
    fn truncated_frames_are_errors_not_panics() {
        let frame = encode(
            &Pong {
                id: 1,
                inc: 1,
                view: 1,
            },
            b"key",
            None,
        );
        for cut in 0..frame.len() {
            let short = frame.slice(..cut);
            assert!(decode::<Pong>(short).is_err(), "cut at {cut}");
        }
    }
}
