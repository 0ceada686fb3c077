//! The on-disk format of Python ddmq 0.9.14, pure (no I/O): message file names, the order of
//! waiting messages, message JSON as Python's `json.dumps` writes it, and `ddmq.yaml`.
//!
//! Everything here takes bytes or names and returns values or a [`FormatError`]; the broker
//! adds the path of the file to it. Files another process writes are untrusted input: no
//! decoder panics.
//!
//! # The integrity field (this crate's addition to the format)
//!
//! Every message file this crate writes ends with one more key, [`INTEGRITY_KEY`]
//! (`"ddmq_crc32c"`), whose value is the string `"crc32c:"` followed by 8 lowercase hex
//! digits: the CRC-32C (Castagnoli, as in iSCSI and ext4; check value of `123456789` is
//! `e3069283`) of the message's *canonical encoding*:
//!
//! 1. Decode the file (any key order and whitespace) into its fields, with the defaults and
//!    normalizations of [`Message::decode`]: `message` (any JSON value, default `""`),
//!    `queue`, `id` and `filename` (strings, default `""`; `filename: null` is `""`),
//!    `priority` and `requeue_counter` (integers, default 0; `requeue_counter: null` is 0),
//!    `queue_number` (a string; a JSON integer becomes its decimal digits), `timeout` (`null`
//!    unless a finite number > 0, written as an integer when whole and below 10^15, else as
//!    Python's `repr` of the float), `requeue` (`false` for `false`/`null`/0/0.0, `true`, or an
//!    integer ≥ 1), `requeue_limit` (`null` for `null`/`false`/0, else an integer ≥ 1), and
//!    every other key with its value as is, except [`INTEGRITY_KEY`] itself.
//! 2. Write that object as Python's
//!    `json.dumps(obj, sort_keys=True, separators=(",", ":"))`: keys sorted by code point at
//!    every level, no whitespace, ASCII only (`"` as `\"`, `\` as `\\`;
//!    `\b`, `\f`, `\n`, `\r`, `\t`; every other character outside U+0020–U+007E as
//!    `\uXXXX`, lowercase hex, a surrogate pair above U+FFFF), integers in decimal, floats
//!    as Python's `repr` (`1.0`, `1e+16`, `1e-05`). JSON
//!    integers outside the 64-bit range are read as floats. Duplicate keys: the last one
//!    counts for the ten fields and inside values; duplicate other top-level keys (which no
//!    writer produces) are all kept, in file order.
//!
//! The checksum therefore covers everything a consumer acts on (body, id, priority, queue
//! number, timeout, requeue fields, file name, extra keys) and does not depend on JSON
//! whitespace, key order or escaping choices. See [`Message::canonical`] and the test vector
//! in this module's tests.
//!
//! Reading ([`Message::decode_checked`]):
//!
//! - **present and equal**: [`Integrity::Verified`];
//! - **present and wrong** (another CRC, not `crc32c:` + 8 lowercase hex digits, not a
//!   string): a [`FormatError`], exactly as for a file that is not JSON, so the broker treats
//!   the file as corrupt (never delivered; set aside in `ROOT/.quarantine/QUEUE/`);
//! - **a damaged key**: any other top-level key whose value is a string starting with
//!   `crc32c:` is an error too, so that damage to the key's name cannot pass a checksummed
//!   file off as one without a checksum;
//! - **absent**: a file written by the Python original (which writes exactly its ten keys) or
//!   by an older version of this crate: accepted as before, [`Integrity::Absent`], with no
//!   protection beyond JSON's own structure.
//!
//! The Python original reads files with the extra key (it keeps unknown keys in the
//! message's `__dict__`); when it requeues one it publishes a fresh file from the ten fields,
//! without the key, and that file reads as [`Integrity::Absent`].

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

use serde_json::Value;

/// Why bytes or a name are not in the ddmq format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FormatError(pub String);

fn bad(what: impl Into<String>) -> FormatError {
    FormatError(what.into())
}

/// The glob `*.ddmq*` by which Python lists message files.
pub fn is_message_file(name: &str) -> bool {
    name.contains(".ddmq")
}

/// Valid queue names: `^[a-zA-Z0-9_-]+$`.
pub fn valid_queue_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

// ---- names ------------------------------------------------------------------------------

/// The name of a waiting message: `P.N.ddmqID`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WaitingName {
    /// `P`: the priority (lower is served first).
    pub priority: u64,
    /// `N`: the queue number, digits (10 integer-second digits, then the fraction).
    pub number: String,
    /// `ID`: what follows `ddmq`, normally 32 lowercase hex digits.
    pub id: String,
}

impl WaitingName {
    /// Parses `P.N.ddmqID`.
    pub fn parse(name: &str) -> Result<WaitingName, FormatError> {
        let mut parts = name.split('.');
        let (Some(p), Some(n), Some(id), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(format!(
                "`{name}` is not a message name (expected PRIORITY.NUMBER.ddmqID)"
            )));
        };
        Self::from_parts(name, p, n, id)
    }

    fn from_parts(name: &str, p: &str, n: &str, id: &str) -> Result<WaitingName, FormatError> {
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("`{name}`: priority `{p}` is not digits")));
        }
        let priority = p
            .parse()
            .map_err(|_| bad(format!("`{name}`: priority `{p}` is too large")))?;
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(format!("`{name}`: queue number `{n}` is not digits")));
        }
        let Some(id) = id.strip_prefix("ddmq") else {
            return Err(bad(format!("`{name}`: `{id}` does not start with `ddmq`")));
        };
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(bad(format!("`{name}`: id `{id}` is not alphanumeric")));
        }
        Ok(WaitingName {
            priority,
            number: n.to_owned(),
            id: id.to_owned(),
        })
    }

    /// The sort key of this name in `order`.
    pub fn key(&self, order: Order) -> SortKey {
        match order {
            Order::Numeric => {
                let split = self.number.len().min(10);
                let (secs, frac) = self.number.split_at(split);
                SortKey {
                    priority: self.priority,
                    secs: secs.parse().unwrap_or(u64::MAX),
                    frac: frac.trim_end_matches('0').to_owned(),
                    id: self.id.clone(),
                    name: self.to_string(),
                }
            }
            Order::Lexicographic => SortKey {
                priority: 0,
                secs: 0,
                frac: String::new(),
                id: String::new(),
                name: self.to_string(),
            },
        }
    }
}

impl std::fmt::Display for WaitingName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.ddmq{}", self.priority, self.number, self.id)
    }
}

/// The name of a claimed message in `work/`: `E.P.N.ddmqID`, where `E` (the expiry epoch)
/// is everything before the last three dot components (`1795412988` or `1795412988.5`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClaimedName {
    /// `E` as written.
    pub expiry: String,
    /// The waiting name inside.
    pub waiting: WaitingName,
}

impl ClaimedName {
    /// Parses `E.P.N.ddmqID`.
    pub fn parse(name: &str) -> Result<ClaimedName, FormatError> {
        let parts: Vec<&str> = name.split('.').collect();
        if parts.len() < 4 || parts.len() > 5 {
            return Err(bad(format!(
                "`{name}` is not a claimed message name (expected EXPIRY.PRIORITY.NUMBER.ddmqID)"
            )));
        }
        let k = parts.len() - 3;
        let expiry = parts[..k].join(".");
        if parts[..k]
            .iter()
            .any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(bad(format!("`{name}`: expiry `{expiry}` is not a number")));
        }
        let waiting = WaitingName::from_parts(name, parts[k], parts[k + 1], parts[k + 2])?;
        Ok(ClaimedName { expiry, waiting })
    }

    /// `E` in seconds (with its fraction, if any).
    pub fn expiry_secs(&self) -> f64 {
        self.expiry.parse().unwrap_or(f64::MAX)
    }

    /// Whether the message is expired at `now` (seconds since the epoch): Python's rule
    /// `int(E) < int(now)` for a whole-second `E`, `E < now` for one with a fraction.
    pub fn expired_at(&self, now: f64) -> bool {
        if self.expiry.contains('.') {
            self.expiry_secs() < now
        } else {
            self.expiry_secs() < now.floor()
        }
    }
}

impl std::fmt::Display for ClaimedName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.expiry, self.waiting)
    }
}

/// Formats an expiry epoch `E`: whole seconds as Python writes them, a fraction to the
/// millisecond (trailing zeros dropped) when the ack timeout is not whole seconds.
pub fn format_expiry(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{}", secs as u64)
    } else {
        let s = format!("{secs:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// The order in which waiting messages are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Order {
    /// Priority as a number, then the queue number as a decimal (`1795412988.734…`), then
    /// the id. Priority 10 comes after 2.
    #[default]
    Numeric,
    /// Python's plain string sort of the names (priority 10 before 2).
    Lexicographic,
}

/// The position of a waiting message in its [`Order`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SortKey {
    priority: u64,
    secs: u64,
    frac: String,
    id: String,
    /// The file name.
    pub name: String,
}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.priority, self.secs, &self.frac, &self.id, &self.name).cmp(&(
            other.priority,
            other.secs,
            &other.frac,
            &other.id,
            &other.name,
        ))
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A queue number `N` for a clock reading in nanoseconds since the epoch: 10 digits of
/// seconds, then 9 of nanoseconds (19 digits).
pub fn queue_number(nanos: u128) -> String {
    format!("{:010}{:09}", nanos / 1_000_000_000, nanos % 1_000_000_000)
}

// ---- message JSON ---------------------------------------------------------------------------

/// The `requeue` field: `false`, `true`, or the priority of requeued copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Requeue {
    /// `false`: deleted on expiry or nack.
    #[default]
    No,
    /// `true`: requeued at the queue's `requeue_prio`.
    Yes,
    /// An integer ≥ 1: requeued at this priority.
    AtPriority(u64),
}

impl Requeue {
    /// Whether the message is to be requeued (Python's truthiness).
    pub fn is_set(self) -> bool {
        !matches!(self, Requeue::No)
    }

    fn to_json(self) -> Value {
        match self {
            Requeue::No => Value::Bool(false),
            Requeue::Yes => Value::Bool(true),
            Requeue::AtPriority(p) => Value::from(p),
        }
    }

    fn from_json(v: &Value) -> Result<Requeue, FormatError> {
        Ok(match v {
            Value::Null | Value::Bool(false) => Requeue::No,
            Value::Bool(true) => Requeue::Yes,
            Value::Number(n) => match n.as_u64() {
                Some(0) => Requeue::No,
                Some(p) => Requeue::AtPriority(p),
                None if n.as_f64() == Some(0.0) => Requeue::No,
                None => return Err(bad(format!("`requeue`: {n} is not a priority"))),
            },
            other => return Err(bad(format!("`requeue`: {other} is not a boolean or int"))),
        })
    }
}

/// One message: the ten keys of the format plus any others, kept in their order.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The payload (falsy values are stored as `""`, as Python does).
    pub message: Value,
    /// The queue name; equals the directory name.
    pub queue: String,
    /// Ack timeout in seconds; `None` (or 0) means the queue's `message_timeout`.
    pub timeout: Option<f64>,
    /// uuid4, 32 hex digits.
    pub id: String,
    /// Priority, as in the file name.
    pub priority: u64,
    /// The queue number `N`, as in the file name.
    pub queue_number: String,
    /// The waiting name at publish time (Python's consume sets it to the claimed name).
    pub filename: String,
    /// Requeue on nack or expiry.
    pub requeue: Requeue,
    /// Requeues so far.
    pub requeue_counter: u64,
    /// Most requeues; `None` (or 0) is unlimited.
    pub requeue_limit: Option<u64>,
    /// Keys the format does not know, in file order; written back after the ten.
    pub extra: Vec<(String, Value)>,
}

/// The key of the integrity field this crate adds to every message file it writes (see the
/// module documentation). Not one of the original's ten keys.
pub const INTEGRITY_KEY: &str = "ddmq_crc32c";

/// The start of the integrity field's value: `crc32c:` then 8 lowercase hex digits.
pub const INTEGRITY_TAG: &str = "crc32c:";

/// What [`Message::decode_checked`] found about a file's integrity field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Integrity {
    /// The field was present and matches the content.
    Verified,
    /// No field: a file of the Python original or of an older version of this crate.
    Absent,
}

/// The ten keys of the original, in the order Python 3 writes them.
pub const KEYS: [&str; 10] = [
    "message",
    "queue",
    "timeout",
    "id",
    "priority",
    "queue_number",
    "filename",
    "requeue",
    "requeue_counter",
    "requeue_limit",
];

/// Python's truthiness of a JSON value.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Collects a JSON object's entries in file order.
struct Entries(Vec<(String, Value)>);

impl<'de> serde::Deserialize<'de> for Entries {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Entries, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Value>()? {
                    out.push((k, v));
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Message {
    /// Decodes a message file. Any key order, missing keys (defaults: `requeue_counter` 0,
    /// `requeue` false) and unknown keys (kept in [`Message::extra`]) are accepted. A file
    /// with an integrity field that does not match its content is an error, as one that is
    /// not JSON is; one without the field is accepted (see [`Message::decode_checked`]).
    pub fn decode(bytes: &[u8]) -> Result<Message, FormatError> {
        Self::decode_checked(bytes).map(|(m, _)| m)
    }

    /// [`Message::decode`], also saying whether the file carried a matching integrity field
    /// ([`Integrity::Verified`]) or none ([`Integrity::Absent`]). A field that is present
    /// but wrong, or a damaged one (another key whose value starts with `crc32c:`), is an
    /// error naming the key.
    pub fn decode_checked(bytes: &[u8]) -> Result<(Message, Integrity), FormatError> {
        if bytes.is_empty() {
            return Err(bad("empty file (0 bytes)"));
        }
        let Entries(entries) =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a JSON object: {e}")))?;
        let mut m = Message {
            message: Value::String(String::new()),
            queue: String::new(),
            timeout: None,
            id: String::new(),
            priority: 0,
            queue_number: String::new(),
            filename: String::new(),
            requeue: Requeue::No,
            requeue_counter: 0,
            requeue_limit: None,
            extra: Vec::new(),
        };
        let mut seal = None;
        for (key, value) in entries {
            let field = |what: &str| bad(format!("`{key}`: {value} is not {what}"));
            match key.as_str() {
                INTEGRITY_KEY => seal = Some(value),
                "message" => m.message = value,
                "queue" => m.queue = value.as_str().ok_or_else(|| field("a string"))?.to_owned(),
                "timeout" => {
                    m.timeout = match &value {
                        Value::Null | Value::Bool(false) => None,
                        Value::Number(n) => n.as_f64().filter(|t| *t > 0.0 && t.is_finite()),
                        _ => return Err(field("a number or null")),
                    }
                }
                "id" => m.id = value.as_str().ok_or_else(|| field("a string"))?.to_owned(),
                "priority" => m.priority = value.as_u64().ok_or_else(|| field("an integer ≥ 0"))?,
                "queue_number" => {
                    m.queue_number = match &value {
                        Value::String(s) => s.clone(),
                        Value::Number(n) if n.is_u64() => n.to_string(),
                        _ => return Err(field("a string of digits")),
                    }
                }
                "filename" => {
                    m.filename = match &value {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        _ => return Err(field("a string")),
                    }
                }
                "requeue" => m.requeue = Requeue::from_json(&value)?,
                "requeue_counter" => {
                    m.requeue_counter = match &value {
                        Value::Null => 0,
                        v => v.as_u64().ok_or_else(|| field("an integer ≥ 0"))?,
                    }
                }
                "requeue_limit" => {
                    m.requeue_limit = match &value {
                        Value::Null | Value::Bool(false) => None,
                        v => match v.as_u64().ok_or_else(|| field("an integer ≥ 0 or null"))? {
                            0 => None,
                            l => Some(l),
                        },
                    }
                }
                _ => {
                    if value.as_str().is_some_and(|v| v.starts_with(INTEGRITY_TAG)) {
                        return Err(bad(format!(
                            "`{key}`: {value} looks like a damaged `{INTEGRITY_KEY}` field"
                        )));
                    }
                    m.extra.push((key, value))
                }
            }
        }
        let Some(seal) = seal else {
            return Ok((m, Integrity::Absent));
        };
        let stored = seal
            .as_str()
            .and_then(|v| v.strip_prefix(INTEGRITY_TAG))
            .filter(|h| h.len() == 8 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .and_then(|h| u32::from_str_radix(h, 16).ok())
            .ok_or_else(|| {
                bad(format!(
                    "`{INTEGRITY_KEY}`: {seal} is not \"{INTEGRITY_TAG}\" and 8 lowercase hex digits"
                ))
            })?;
        let computed = m.crc32c();
        if stored != computed {
            return Err(bad(format!(
                "`{INTEGRITY_KEY}`: the file says {INTEGRITY_TAG}{stored:08x}, its content has \
                 {INTEGRITY_TAG}{computed:08x}: the file is damaged"
            )));
        }
        Ok((m, Integrity::Verified))
    }

    /// The ten fields as [`Message::encode`] writes them, in Python 3's order.
    fn fields(&self) -> [(&'static str, Value); 10] {
        let timeout = match self.timeout {
            None => Value::Null,
            Some(t) if t.fract() == 0.0 && t < 1e15 => Value::from(t as u64),
            Some(t) => serde_json::Number::from_f64(t).map_or(Value::Null, Value::Number),
        };
        [
            (KEYS[0], self.message.clone()),
            (KEYS[1], Value::String(self.queue.clone())),
            (KEYS[2], timeout),
            (KEYS[3], Value::String(self.id.clone())),
            (KEYS[4], Value::from(self.priority)),
            (KEYS[5], Value::String(self.queue_number.clone())),
            (KEYS[6], Value::String(self.filename.clone())),
            (KEYS[7], self.requeue.to_json()),
            (KEYS[8], Value::from(self.requeue_counter)),
            (KEYS[9], self.requeue_limit.map_or(Value::Null, Value::from)),
        ]
    }

    /// The canonical encoding the integrity field covers (see the module documentation):
    /// Python's `json.dumps(fields, sort_keys=True, separators=(",", ":"))` of the ten fields
    /// and the extra keys, without the integrity field.
    pub fn canonical(&self) -> Vec<u8> {
        let fixed = self.fields();
        let mut entries: Vec<(&str, &Value)> = fixed
            .iter()
            .map(|(k, v)| (*k, v))
            .chain(
                self.extra
                    .iter()
                    .filter(|(k, _)| k != INTEGRITY_KEY)
                    .map(|(k, v)| (k.as_str(), v)),
            )
            .collect();
        // Stable: duplicate extra keys stay in file order.
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        for (i, (k, v)) in entries.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            python_json_into(&mut out, &Value::String(k.to_owned()));
            out.push(b':');
            canonical_into(&mut out, v);
        }
        out.push(b'}');
        out
    }

    /// The CRC-32C of [`Message::canonical`]: the value of the integrity field.
    pub fn crc32c(&self) -> u32 {
        crc32c::crc32c(&self.canonical())
    }

    /// Encodes the message as this crate writes it: [`Message::encode_without_checksum`],
    /// then the integrity field as the last key (`, "ddmq_crc32c": "crc32c:…"`), which is
    /// also what Python's `json.dumps(msg.__dict__)` writes for the message it reads from
    /// such a file.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.encode_without_checksum();
        out.pop(); // the closing brace
        let seal = format!(
            ", \"{INTEGRITY_KEY}\": \"{INTEGRITY_TAG}{:08x}\"}}",
            self.crc32c()
        );
        out.extend_from_slice(seal.as_bytes());
        out
    }

    /// Encodes the message as the original writes it, Python 3's `json.dumps(msg.__dict__)`:
    /// the ten keys in order, then the extra ones; `", "` and `": "`; ASCII only; no
    /// integrity field (one in [`Message::extra`] is left out).
    pub fn encode_without_checksum(&self) -> Vec<u8> {
        let fixed = self.fields();
        let mut out = Vec::with_capacity(256);
        out.push(b'{');
        let entries = fixed.iter().map(|(k, v)| (*k, v)).chain(
            self.extra
                .iter()
                .filter(|(k, _)| k != INTEGRITY_KEY)
                .map(|(k, v)| (k.as_str(), v)),
        );
        for (i, (k, v)) in entries.enumerate() {
            if i > 0 {
                out.extend_from_slice(b", ");
            }
            python_json_into(&mut out, &Value::String(k.to_owned()));
            out.extend_from_slice(b": ");
            python_json_into(&mut out, v);
        }
        out.push(b'}');
        out
    }

    /// Whether a requeue is due under the limit: `requeue_limit` unset or
    /// `requeue_counter < requeue_limit`.
    pub fn under_limit(&self) -> bool {
        self.requeue_limit.is_none_or(|l| self.requeue_counter < l)
    }

    /// The payload as text: a JSON string as is, anything else as JSON.
    pub fn text(&self) -> String {
        match &self.message {
            Value::String(s) => s.clone(),
            other => python_json(other),
        }
    }
}

/// A value as Python's `json.dumps` writes it (ASCII only, `", "` and `": "`).
pub fn python_json(v: &Value) -> String {
    let mut out = Vec::new();
    python_json_into(&mut out, v);
    String::from_utf8(out).unwrap_or_default()
}

/// A value in the canonical encoding: objects with keys sorted by code point (UTF-8 byte
/// order is code point order), `,` and `:` without spaces, scalars as [`python_json`].
fn canonical_into(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                python_json_into(out, &Value::String(k.clone()));
                out.push(b':');
                canonical_into(out, v);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_into(out, item);
            }
            out.push(b']');
        }
        scalar => python_json_into(out, scalar),
    }
}

fn python_json_into(out: &mut Vec<u8>, v: &Value) {
    use serde::Serialize;
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, PyFormatter);
    // Writing into a Vec cannot fail.
    let _ = v.serialize(&mut ser);
}

/// serde_json formatting as Python's `json.dumps` with its default arguments.
struct PyFormatter;

impl serde_json::ser::Formatter for PyFormatter {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut buf = [0u16; 2];
        for c in fragment.chars() {
            if (' '..='~').contains(&c) {
                w.write_all(&[c as u8])?;
            } else {
                for unit in c.encode_utf16(&mut buf) {
                    write!(w, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f64) -> io::Result<()> {
        w.write_all(python_float_repr(value).as_bytes())
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, value: f32) -> io::Result<()> {
        self.write_f64(w, f64::from(value))
    }
}

/// Python's `repr(float)`: the shortest round-trip digits, in positional notation for
/// exponents −4 ≤ e < 16 (`1.0`, `0.0001`) and scientific otherwise (`1e+16`, `1e-05`).
pub fn python_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{v:e}"); // shortest digits: "1.2345e17", "-5e-5"
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if (-4..16).contains(&exp) {
        let s = format!("{v}");
        if s.contains('.') { s } else { format!("{s}.0") }
    } else {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    }
}

// ---- settings -------------------------------------------------------------------------------

/// The effective settings of a queue (defaults < root `ddmq.yaml` < queue `ddmq.yaml`).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Epoch seconds of the last clean (the 60 s throttle).
    pub cleaned: i64,
    /// Ack timeout in seconds for messages without their own.
    pub message_timeout: f64,
    /// Default priority of a publish.
    pub priority: u64,
    /// Read by nothing in 0.9.14; kept.
    pub requeue: bool,
    /// Priority of requeued copies; 0 means the queue's `priority`.
    pub requeue_prio: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            cleaned: 0,
            message_timeout: 600.0,
            priority: 999,
            requeue: true,
            requeue_prio: 0,
        }
    }
}

/// The contents of one `ddmq.yaml`, key by key (sorted, as PyYAML writes them).
pub type SettingsFile = BTreeMap<String, yaml_serde::Value>;

/// The 76 bytes of a fresh queue's `ddmq.yaml` (and of the root's `ddmq.yaml.example`).
pub const DEFAULT_SETTINGS_YAML: &str =
    "cleaned: 0\nmessage_timeout: 600\npriority: 999\nrequeue: true\nrequeue_prio: 0\n";

/// Parses a `ddmq.yaml` (safe YAML only). An empty file or `null` is an empty mapping.
pub fn decode_settings(bytes: &[u8]) -> Result<SettingsFile, FormatError> {
    let text = std::str::from_utf8(bytes).map_err(|e| bad(format!("not UTF-8: {e}")))?;
    if text.trim().is_empty() {
        return Ok(SettingsFile::new());
    }
    let value: yaml_serde::Value = yaml_serde::from_str(text).map_err(|e| {
        // Name where: the parser's message alone does not always say.
        let at = e.location().map_or(String::new(), |l| {
            format!(
                " (at offset {}, line {} column {})",
                l.index(),
                l.line(),
                l.column()
            )
        });
        let text = e.to_string();
        if text.contains(" at line ") || at.is_empty() {
            bad(format!("not YAML: {text}"))
        } else {
            bad(format!("not YAML: {text}{at}"))
        }
    })?;
    match value {
        yaml_serde::Value::Null => Ok(SettingsFile::new()),
        yaml_serde::Value::Mapping(map) => {
            let mut out = SettingsFile::new();
            for (k, v) in map {
                let Some(k) = k.as_str() else {
                    return Err(bad(format!("key {k:?} is not a string")));
                };
                out.insert(k.to_owned(), v);
            }
            Ok(out)
        }
        other => Err(bad(format!(
            "the document (offset 0) is {other:?}, expected a mapping of settings"
        ))),
    }
}

/// Writes settings as PyYAML's `yaml.dump(…, default_flow_style=False)`: sorted keys, one
/// `key: value` per line. An entry that would not read back as the same key and value (a
/// tagged value the serializer refuses, say) is an error naming the key, never dropped.
pub fn encode_settings(file: &SettingsFile) -> Result<String, FormatError> {
    let mut out = String::new();
    for (k, v) in file {
        let value = match v {
            yaml_serde::Value::Bool(b) if plain_key(k) => b.to_string(),
            yaml_serde::Value::Number(n) if plain_key(k) => n.to_string(),
            yaml_serde::Value::Null if plain_key(k) => "null".to_owned(),
            // Keys that need quoting (`a: b`, `#x`, `123`, ...) go through the serializer too:
            // written bare they would read back as another key, or not parse at all.
            other => {
                let mut one = SettingsFile::new();
                one.insert(k.clone(), other.clone());
                let text = yaml_serde::to_string(&one)
                    .map_err(|e| bad(format!("`{k}` cannot be written as YAML: {e}")))?;
                if decode_settings(text.as_bytes()).ok().as_ref() != Some(&one) {
                    return Err(bad(format!(
                        "`{k}` would not read back as written ({text:?})"
                    )));
                }
                out.push_str(&text);
                continue;
            }
        };
        let _ = writeln!(out, "{k}: {value}");
    }
    Ok(out)
}

/// Whether `k` written bare (`k: 0`) reads back as the one string key `k`.
fn plain_key(k: &str) -> bool {
    !k.is_empty()
        && yaml_serde::from_str::<yaml_serde::Value>(&format!("{k}: 0"))
            .ok()
            .and_then(|v| v.as_mapping().map(|m| m.len() == 1 && m.contains_key(k)))
            .unwrap_or(false)
}

impl Settings {
    /// The five keys of a complete settings file.
    pub const KEYS: [&'static str; 5] = [
        "cleaned",
        "message_timeout",
        "priority",
        "requeue",
        "requeue_prio",
    ];

    /// Applies the keys of `file` over `self`; a key of the wrong type is an error naming it.
    pub fn apply(&mut self, file: &SettingsFile) -> Result<(), FormatError> {
        for (k, v) in file {
            let wrong = |what: &str| bad(format!("`{k}`: {v:?} is not {what}"));
            match k.as_str() {
                "cleaned" => self.cleaned = yaml_f64(v).ok_or_else(|| wrong("a number"))? as i64,
                "message_timeout" => {
                    self.message_timeout = yaml_f64(v)
                        .filter(|t| *t >= 0.0)
                        .ok_or_else(|| wrong("a number ≥ 0"))?
                }
                "priority" => self.priority = v.as_u64().ok_or_else(|| wrong("an integer ≥ 0"))?,
                "requeue" => self.requeue = v.as_bool().ok_or_else(|| wrong("a boolean"))?,
                "requeue_prio" => {
                    self.requeue_prio = v.as_u64().ok_or_else(|| wrong("an integer ≥ 0"))?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The settings as a file of all five keys.
    pub fn to_file(&self) -> SettingsFile {
        let mut f = SettingsFile::new();
        f.insert("cleaned".into(), self.cleaned.into());
        // Whole numbers below 2^64 as integers (as PyYAML writes them); larger ones stay
        // floats, which `as u64` would have clamped to u64::MAX.
        let t = if self.message_timeout.fract() == 0.0 && self.message_timeout < u64::MAX as f64 {
            yaml_serde::Value::from(self.message_timeout as u64)
        } else {
            yaml_serde::Value::from(self.message_timeout)
        };
        f.insert("message_timeout".into(), t);
        f.insert("priority".into(), self.priority.into());
        f.insert("requeue".into(), self.requeue.into());
        f.insert("requeue_prio".into(), self.requeue_prio.into());
        f
    }
}

fn yaml_f64(v: &yaml_serde::Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_i64().map(|i| i as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_in_every_form() {
        for name in [
            "999.17954129887345678.ddmq0123456789abcdef0123456789abcdef",
            "0.1795412988000000000.ddmqab",
            "10.179541298812.ddmqX",
        ] {
            assert_eq!(WaitingName::parse(name).unwrap().to_string(), name);
        }
        for name in [
            "1795412988.999.17954129887345678.ddmqab",
            "1795412988.5.999.17954129887345678.ddmqab",
        ] {
            let c = ClaimedName::parse(name).unwrap();
            assert_eq!(c.to_string(), name);
            assert_eq!(c.waiting.priority, 999);
        }
        let c = ClaimedName::parse("1795412988.5.1.2.ddmqab").unwrap();
        assert_eq!(c.expiry, "1795412988.5");
        assert_eq!(c.expiry_secs(), 1_795_412_988.5);
    }

    #[test]
    fn bad_names_are_errors_that_name_them() {
        for name in [
            "x.1.ddmqab",
            "1.x.ddmqab",
            "1.2.3",
            "1.2.ddmq",
            "1.2.ddmqa-b",
            "",
            "1.2.ddmqab.4",
            "-1.2.ddmqab",
        ] {
            let e = WaitingName::parse(name).unwrap_err();
            assert!(e.0.contains(&format!("`{name}`")), "{e}");
        }
        for name in [
            "a.1.2.ddmqab",
            "1.2.ddmqab",
            ".1.2.ddmqab",
            "1.2.3.4.5.ddmqab",
        ] {
            assert!(ClaimedName::parse(name).is_err(), "{name}");
        }
    }

    #[test]
    fn numeric_order_puts_10_after_2_and_interleaves_python_numbers() {
        let key = |n: &str| WaitingName::parse(n).unwrap().key(Order::Numeric);
        assert!(key("2.1795412988000000000.ddmqa") < key("10.1795412988000000000.ddmqa"));
        // A Python 3 number (17 digits) and ours (19 digits) compare as decimals.
        assert!(key("5.17954129887345678.ddmqz") < key("5.1795412988734567900.ddmqa"));
        assert!(key("5.1795412988734567800.ddmqa") < key("5.17954129887345679.ddmqa"));
        // Python 2's 12 digits (10 ms steps).
        assert!(key("5.179541298873.ddmqz") < key("5.1795412988731000001.ddmqa"));
        let lex = |n: &str| WaitingName::parse(n).unwrap().key(Order::Lexicographic);
        assert!(lex("10.1795412988000000000.ddmqa") < lex("2.1795412988000000000.ddmqa"));
    }

    #[test]
    fn expiry_rules() {
        let c = ClaimedName::parse("100.1.2.ddmqab").unwrap();
        assert!(!c.expired_at(100.9));
        assert!(c.expired_at(101.0));
        let c = ClaimedName::parse("100.25.1.2.ddmqab").unwrap();
        assert!(!c.expired_at(100.2));
        assert!(c.expired_at(100.3));
        assert_eq!(format_expiry(100.0), "100");
        assert_eq!(format_expiry(100.25), "100.25");
        assert_eq!(
            queue_number(1_795_412_988_000_000_001),
            "1795412988000000001"
        );
    }

    fn sample() -> Message {
        Message {
            message: Value::String("Hello World!".into()),
            queue: "q".into(),
            timeout: None,
            id: "89723438b9d0403c91943f4ffaf8ba35".into(),
            priority: 999,
            queue_number: "15397024586789012".into(),
            filename: "999.15397024586789012.ddmq89723438b9d0403c91943f4ffaf8ba35".into(),
            requeue: Requeue::No,
            requeue_counter: 0,
            requeue_limit: None,
            extra: Vec::new(),
        }
    }

    #[test]
    fn json_is_python_json_dumps_byte_for_byte() {
        let m = sample();
        let python = r#"{"message": "Hello World!", "queue": "q", "timeout": null, "id": "89723438b9d0403c91943f4ffaf8ba35", "priority": 999, "queue_number": "15397024586789012", "filename": "999.15397024586789012.ddmq89723438b9d0403c91943f4ffaf8ba35", "requeue": false, "requeue_counter": 0, "requeue_limit": null"#;
        assert_eq!(
            String::from_utf8(m.encode_without_checksum()).unwrap(),
            format!("{python}}}")
        );
        // Ours: the same, then the integrity field (what Python's json.dumps(msg.__dict__)
        // writes for the message it reads from that file).
        assert_eq!(
            String::from_utf8(m.encode()).unwrap(),
            format!("{python}, \"ddmq_crc32c\": \"crc32c:bba5a60e\"}}")
        );
        // Python: json.dumps({"a": "\x7f/\u00e9\U0001F600\x01", "f": [1e16, 1e-5, 0.1, 1.0, 1.2345678901234568e+17]})
        let v: Value = serde_json::json!({"a": "\u{7f}/\u{e9}\u{1F600}\u{1}\"\\\n\r\t\u{8}\u{c}", "f": [1e16, 1e-5, 0.1, 1.0, 123456789012345678.0]});
        assert_eq!(
            python_json(&v),
            r#"{"a": "\u007f/\u00e9\ud83d\ude00\u0001\"\\\n\r\t\b\f", "f": [1e+16, 1e-05, 0.1, 1.0, 1.2345678901234568e+17]}"#
        );
    }

    #[test]
    fn decode_accepts_python2_order_missing_and_unknown_keys() {
        let py2 = br#"{"priority": 3, "queue_number": "179541298873", "requeue_counter": 1, "filename": "3.179541298873.ddmqab", "queue": "q", "requeue_limit": 2, "timeout": 5, "message": "caf\u00e9", "requeue": 7, "id": "ab"}"#;
        let m = Message::decode(py2).unwrap();
        assert_eq!(
            (m.priority, m.requeue, m.requeue_counter, m.requeue_limit),
            (3, Requeue::AtPriority(7), 1, Some(2))
        );
        assert_eq!(m.timeout, Some(5.0));
        assert_eq!(m.message, "café");
        let m = Message::decode(
            "{\"message\": \"raw é\", \"x-trace\": [1, 2], \"queue\": \"q\"}".as_bytes(),
        )
        .unwrap();
        assert_eq!(m.requeue_counter, 0);
        assert_eq!(
            m.extra,
            vec![("x-trace".to_owned(), serde_json::json!([1, 2]))]
        );
        assert!(
            String::from_utf8(m.encode_without_checksum())
                .unwrap()
                .ends_with(r#""requeue_limit": null, "x-trace": [1, 2]}"#)
        );
        let again = Message::decode(&m.encode()).unwrap();
        assert_eq!(again, m);
    }

    /// Test vectors computed by an independent implementation (Python's `json.dumps(…,
    /// sort_keys=True, separators=(",", ":"))` and a bitwise CRC-32C).
    #[test]
    fn canonical_encoding_and_crc_match_the_documented_definition() {
        let m = sample();
        assert_eq!(
            String::from_utf8(m.canonical()).unwrap(),
            r#"{"filename":"999.15397024586789012.ddmq89723438b9d0403c91943f4ffaf8ba35","id":"89723438b9d0403c91943f4ffaf8ba35","message":"Hello World!","priority":999,"queue":"q","queue_number":"15397024586789012","requeue":false,"requeue_counter":0,"requeue_limit":null,"timeout":null}"#
        );
        assert_eq!(m.crc32c(), 0xbba5_a60e);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        let mut m = sample();
        m.message = serde_json::json!({"b": [1.5, "caf\u{e9}"], "a": null});
        m.timeout = Some(2.5);
        m.requeue = Requeue::AtPriority(3);
        m.requeue_limit = Some(2);
        m.extra = vec![("x-trace".into(), Value::from("\u{1F600}"))];
        assert_eq!(
            String::from_utf8(m.canonical()).unwrap(),
            r#"{"filename":"999.15397024586789012.ddmq89723438b9d0403c91943f4ffaf8ba35","id":"89723438b9d0403c91943f4ffaf8ba35","message":{"a":null,"b":[1.5,"caf\u00e9"]},"priority":999,"queue":"q","queue_number":"15397024586789012","requeue":3,"requeue_counter":0,"requeue_limit":2,"timeout":2.5,"x-trace":"\ud83d\ude00"}"#
        );
        assert_eq!(m.crc32c(), 0xa159_3df2);
    }

    #[test]
    fn the_integrity_field_ignores_layout_and_catches_content() {
        let m = sample();
        assert_eq!(
            Message::decode_checked(&m.encode()).unwrap(),
            (m.clone(), Integrity::Verified)
        );
        assert_eq!(
            Message::decode_checked(&m.encode_without_checksum()).unwrap(),
            (m.clone(), Integrity::Absent)
        );
        // Other key order, whitespace, escapes and number spellings: the same content.
        let relaid = "{ \"ddmq_crc32c\":\"crc32c:bba5a60e\",\n\"requeue_limit\":false,\"requeue_counter\":null,\
             \"requeue\":0,\"filename\":\"999.15397024586789012.ddmq89723438b9d0403c91943f4ffaf8ba35\",\
             \"queue_number\":\"15397024586789012\",\"priority\":999,\"id\":\"89723438b9d0403c91943f4ffaf8ba35\",\
             \"timeout\":0,\"queue\":\"\\u0071\",\t\"message\":\"Hello World!\"\r\n}";
        assert_eq!(
            Message::decode_checked(relaid.as_bytes()).unwrap(),
            (m.clone(), Integrity::Verified)
        );
        // Any change of content, a malformed field, a damaged key name: errors naming it.
        let sealed = String::from_utf8(m.encode()).unwrap();
        for (from, to) in [
            ("Hello", "Hellp"),
            ("999,", "998,"),
            ("\"queue\": \"q\"", "\"queue\": \"r\""),
            ("\"requeue_limit\": null", "\"requeue_limit\": 1"),
            (
                "\"requeue_limit\": null",
                "\"requeue_limit\": null, \"x\": 1",
            ),
            ("\"priority\"", "\"prioritz\""),
            ("\"requeue_counter\"", "\"requeue_counteq\""),
        ] {
            let e = Message::decode(sealed.replacen(from, to, 1).as_bytes()).unwrap_err();
            assert!(
                e.0.contains("`ddmq_crc32c`") && e.0.contains("damaged"),
                "{from}: {e}"
            );
        }
        for (from, to) in [
            ("bba5a60e", "bba5a60E"),
            ("bba5a60e", "bba5a60"),
            ("\"crc32c:bba5a60e\"", "3148195342"),
            ("crc32c:", "crc32d:"),
        ] {
            let e = Message::decode(sealed.replacen(from, to, 1).as_bytes()).unwrap_err();
            assert!(
                e.0.contains("`ddmq_crc32c`") && e.0.contains("hex"),
                "{to}: {e}"
            );
        }
        let e = Message::decode(sealed.replacen("ddmq_crc32c", "ddmq_crc32b", 1).as_bytes())
            .unwrap_err();
        assert!(
            e.0.contains("`ddmq_crc32b`") && e.0.contains("damaged"),
            "{e}"
        );
        // An integrity field in `extra` is not written twice.
        let mut with = m.clone();
        with.extra
            .push((INTEGRITY_KEY.into(), Value::from("crc32c:00000000")));
        assert_eq!(with.encode(), m.encode());
    }

    #[test]
    fn corrupt_json_is_an_error_not_a_panic() {
        for bytes in [
            &b""[..],
            b"{",
            b"[1]",
            b"{\"priority\": -1}",
            b"{\"queue\": 5}",
            b"\xff\xfe",
            b"{\"requeue\": \"yes\"}",
            b"{\"message\": \"x\"} trailing",
        ] {
            assert!(
                Message::decode(bytes).is_err(),
                "{:?}",
                String::from_utf8_lossy(bytes)
            );
        }
        assert_eq!(Message::decode(b"").unwrap_err().0, "empty file (0 bytes)");
    }

    #[test]
    fn settings_yaml_is_pyyaml_block_style() {
        assert_eq!(DEFAULT_SETTINGS_YAML.len(), 76);
        assert_eq!(
            encode_settings(&Settings::default().to_file()).unwrap(),
            DEFAULT_SETTINGS_YAML
        );
        let mut s = Settings::default();
        s.apply(&decode_settings(b"{priority: 5, message_timeout: 2.5, colour: red}").unwrap())
            .unwrap();
        assert_eq!((s.priority, s.message_timeout), (5, 2.5));
        assert!(decode_settings(b"").unwrap().is_empty());
        assert!(decode_settings(b"- a\n- b\n").is_err());
        assert!(decode_settings(b"a: [").is_err());
        let mut f = decode_settings(b"priority: x\n").unwrap();
        assert!(
            Settings::default()
                .apply(&f)
                .unwrap_err()
                .0
                .contains("`priority`")
        );
        f.insert("priority".into(), 1.into());
        f.insert("colour".into(), "007".into());
        assert_eq!(encode_settings(&f).unwrap(), "colour: '007'\npriority: 1\n");
    }

    #[test]
    fn queue_names() {
        assert!(valid_queue_name("a-Z_09"));
        for bad in ["", "../x", "a b", "a.b", "é"] {
            assert!(!valid_queue_name(bad), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Message::decode(&bytes);
            let _ = decode_settings(&bytes);
            let text = String::from_utf8_lossy(&bytes);
            let _ = WaitingName::parse(&text);
            let _ = ClaimedName::parse(&text);
        }

        #[test]
        fn strings_round_trip(s in ".*") {
            let mut m = sample();
            m.message = Value::String(s);
            let bytes = m.encode();
            proptest::prop_assert!(bytes.is_ascii());
            proptest::prop_assert_eq!(Message::decode(&bytes).unwrap(), m.clone());
            // Another writer's layout of the same file (sorted keys, indentation, raw UTF-8
            // instead of escapes) carries the same checksum.
            let v: Value = serde_json::from_slice(&bytes).unwrap();
            let pretty = serde_json::to_vec_pretty(&v).unwrap();
            proptest::prop_assert_eq!(
                Message::decode_checked(&pretty).unwrap(),
                (m, Integrity::Verified)
            );
        }

        #[test]
        fn any_changed_field_is_caught(s in ".*", p in 0u64..2000, c in 0u64..5) {
            let mut m = sample();
            m.message = Value::String(s.clone());
            let sealed = String::from_utf8(m.encode()).unwrap();
            let seal = &sealed[sealed.rfind(", \"ddmq_crc32c\"").unwrap()..];
            let mut other = m.clone();
            other.message = Value::String(format!("{s}x"));
            other.priority = p;
            other.requeue_counter = c;
            let forged = String::from_utf8(other.encode_without_checksum()).unwrap();
            let forged = format!("{}{seal}", &forged[..forged.len() - 1]);
            proptest::prop_assert!(Message::decode(forged.as_bytes()).is_err());
        }
    }
}
