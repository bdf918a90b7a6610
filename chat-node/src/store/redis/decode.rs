//! Turning script and command replies into the store's types. Anything
//! unexpected is `StoreError::Corrupt` (an `internal` error for the client),
//! never a panic.

use std::collections::HashMap;

use ::redis::Value;

use crate::protocol::server::InboxEvent;
use crate::protocol::{Kind, Message};
use crate::store::{Nodes, StoreError, TokenRecord};

pub(super) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(super) fn as_i64(v: &Value) -> Result<i64, StoreError> {
    match v {
        Value::Int(n) => Ok(*n),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| corrupt("expected an integer")),
        other => Err(corrupt(format!("expected an integer, got {other:?}"))),
    }
}

pub(super) fn as_u64(v: &Value) -> Result<u64, StoreError> {
    u64::try_from(as_i64(v)?).map_err(|_| corrupt("expected a non-negative integer"))
}

pub(super) fn as_string(v: &Value) -> Result<String, StoreError> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).map_err(|_| corrupt("expected UTF-8")),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        other => Err(corrupt(format!("expected a string, got {other:?}"))),
    }
}

pub(super) fn as_array(v: Value) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(a) | Value::Set(a) => Ok(a),
        other => Err(corrupt(format!("expected an array, got {other:?}"))),
    }
}

/// A hash as returned by HGETALL inside a script (a flat field/value array).
pub(super) fn as_fields(v: Value) -> Result<HashMap<String, String>, StoreError> {
    let items = match v {
        Value::Map(pairs) => {
            return pairs
                .iter()
                .map(|(k, v)| Ok((as_string(k)?, as_string(v)?)))
                .collect();
        }
        other => as_array(other)?,
    };
    items
        .chunks(2)
        .map(|kv| match kv {
            [k, v] => Ok((as_string(k)?, as_string(v)?)),
            _ => Err(corrupt("odd field list")),
        })
        .collect()
}

/// Rebuilds a message from its hash.
pub(super) fn message_from_fields(f: HashMap<String, String>) -> Result<Message, StoreError> {
    let get = |name: &str| {
        f.get(name)
            .cloned()
            .ok_or_else(|| corrupt(format!("message without {name}")))
    };
    let num = |name: &str| -> Result<u64, StoreError> {
        get(name)?
            .parse()
            .map_err(|_| corrupt(format!("message {name} is not a number")))
    };
    let kind_s = get("kind")?;
    let kind: Kind = kind_s
        .parse()
        .map_err(|_| corrupt(format!("unknown kind {kind_s}")))?;
    let media = match f.get("media") {
        Some(j) if !j.is_empty() => Some(serde_json::from_str(j).map_err(corrupt)?),
        _ => None,
    };
    let played = (kind == Kind::Voice).then(|| f.get("played").is_some_and(|p| p == "1"));
    let group = f.get("group").cloned();
    let system = match f.get("system") {
        Some(j) if !j.is_empty() => Some(serde_json::from_str(j).map_err(corrupt)?),
        _ => None,
    };
    let recalled = f.get("recalled").is_some_and(|r| r == "1").then_some(true);
    Ok(Message {
        id: get("id")?,
        conv: get("conv")?,
        seq: num("seq")?,
        from: get("from")?,
        // A group message has none.
        to: match &group {
            Some(_) => String::new(),
            None => get("to")?,
        },
        group,
        kind,
        body: f.get("body").cloned().unwrap_or_default(),
        media: if recalled.is_some() { None } else { media },
        ts: num("ts")?,
        played,
        system,
        recalled,
    })
}

pub(super) fn message_from_value(v: Value) -> Result<Message, StoreError> {
    message_from_fields(as_fields(v)?)
}

/// A message hash, or `None` for an empty one (the message left Redis).
pub(super) fn maybe_message(v: Value) -> Result<Option<Message>, StoreError> {
    let f = as_fields(v)?;
    if f.is_empty() {
        return Ok(None);
    }
    message_from_fields(f).map(Some)
}

/// What an inbox entry names: `<id>:<ts>:<seq>:<conv>`, or a bare id when
/// written before entries carried the rest (see send.lua).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InboxRef {
    pub pts: u64,
    pub id: String,
    /// `(conv, seq)`: the message's key in the archive.
    pub key: Option<(String, u64)>,
}

impl InboxRef {
    pub fn parse(entry: &str, pts: u64) -> InboxRef {
        let mut parts = entry.splitn(4, ':');
        let id = parts.next().unwrap_or_default().to_owned();
        let key = match (parts.next(), parts.next(), parts.next()) {
            (Some(_ts), Some(seq), Some(conv)) => seq.parse().ok().map(|s| (conv.to_owned(), s)),
            _ => None,
        };
        InboxRef { pts, id, key }
    }
}

/// The event of an event entry `~<message id>:<ts>:<by>:<conv>` (see
/// recall.lua); `None` for a message entry.
pub(super) fn inbox_event(entry: &str) -> Option<InboxEvent> {
    let rest = entry.strip_prefix('~')?;
    let mut parts = rest.splitn(4, ':');
    let (id, _ts, by, conv) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    Some(InboxEvent {
        kind: "recalled".into(),
        msg: id.to_owned(),
        conv: conv.to_owned(),
        by: by.to_owned(),
    })
}

/// A presence hash (HGETALL inside a script): the nodes holding sessions,
/// as (port, instance) in port order.
pub(super) fn nodes_from_value(v: Value) -> Result<Nodes, StoreError> {
    let mut nodes = as_fields(v)?
        .into_iter()
        .map(|(port, instance)| {
            let port = port
                .parse()
                .map_err(|_| corrupt(format!("presence port {port} is not a port")))?;
            Ok((port, instance))
        })
        .collect::<Result<Nodes, StoreError>>()?;
    nodes.sort_unstable();
    Ok(nodes)
}

pub(super) fn token_from_fields(
    f: &HashMap<String, String>,
) -> Result<Option<TokenRecord>, StoreError> {
    if f.is_empty() {
        return Ok(None);
    }
    let get = |name: &str| {
        f.get(name)
            .cloned()
            .ok_or_else(|| corrupt(format!("token without {name}")))
    };
    Ok(Some(TokenRecord {
        user: get("user")?,
        platform: get("platform")?,
        expires_at: get("expires_at")?
            .parse()
            .map_err(|_| corrupt("token expiry is not a number"))?,
    }))
}

/// One stream entry: its id and its fields.
pub(super) type StreamEntry = (String, HashMap<String, String>);

/// Stream entries `[[id, [field, value…]]…]` (as XRANGE, XAUTOCLAIM and
/// each stream of XREADGROUP give them); an entry deleted while pending
/// (fields nil) is left out.
pub(super) fn stream_entries(v: Value) -> Result<Vec<StreamEntry>, StoreError> {
    let list = match v {
        Value::Nil => return Ok(Vec::new()),
        v => as_array(v)?,
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        let mut parts = as_array(item)?.into_iter();
        let (Some(id), Some(fields)) = (parts.next(), parts.next()) else {
            continue;
        };
        if fields == Value::Nil {
            continue;
        }
        out.push((as_string(&id)?, as_fields(fields)?));
    }
    Ok(out)
}

/// The entries of an `XREADGROUP` reply: nil when nothing came, else one
/// `[stream, entries]` per stream (a map in RESP3).
pub(super) fn read_group_entries(reply: Value) -> Result<Vec<StreamEntry>, StoreError> {
    let streams = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(m) => m.into_iter().map(|(_, v)| v).collect(),
        v => as_array(v)?
            .into_iter()
            .map(|s| {
                as_array(s).and_then(|mut kv| kv.pop().ok_or_else(|| corrupt("empty stream reply")))
            })
            .collect::<Result<Vec<_>, _>>()?,
    };
    let mut out = Vec::new();
    for s in streams {
        out.extend(stream_entries(s)?);
    }
    Ok(out)
}

/// The milliseconds a stream id starts with (the time it was added).
pub(super) fn stream_id_ms(id: &str) -> Option<u64> {
    id.split('-').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_entries_name_their_archive_key() {
        let r = InboxRef::parse("01JD:1763856000123:17:dm:alice:bob", 4);
        assert_eq!(r.id, "01JD");
        assert_eq!(r.key, Some(("dm:alice:bob".into(), 17)));
        let legacy = InboxRef::parse("01JD", 4);
        assert_eq!((legacy.id.as_str(), legacy.key), ("01JD", None));
        let g = InboxRef::parse("01JD:1763856000123:3:g:g-01JD0000000000000000000000", 5);
        assert_eq!(g.key, Some(("g:g-01JD0000000000000000000000".into(), 3)));
    }

    #[test]
    fn event_entries_name_what_happened() {
        let e = inbox_event("~01JD:1763856000123:alice:dm:alice:bob").unwrap();
        assert_eq!(
            (
                e.msg.as_str(),
                e.by.as_str(),
                e.conv.as_str(),
                e.kind.as_str()
            ),
            ("01JD", "alice", "dm:alice:bob", "recalled")
        );
        assert!(inbox_event("01JD:1:2:dm:a:b").is_none());
    }
}
