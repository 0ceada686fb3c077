//! The wire format: one JSON object per WebSocket message. Pure encode/decode, no I/O.
//!
//! Requests (client → server), keys in this order, `", "` between members and `": "` after
//! each key, exactly as Python's `json.dumps` writes them:
//!
//! ```text
//! {"action": "put", "topic": "greetings", "message": "hello world!"}
//! {"action": "get", "topic": "greetings"}
//! {"action": "get_latest", "topic": "greetings"}      (protocol 1.4)
//! {"action": "shutdown", "topic": ""}                  (protocol 1.1)
//! ```
//!
//! Replies (server → client), one per `get`/`get_latest`, none for `put`/`shutdown`:
//!
//! ```text
//! {"message": "hello world!"}
//! {"message": ""}                                     (nothing eligible)
//! ```
//!
//! Strings are escaped as Python's default `json.dumps` does (`ensure_ascii`): every
//! non-ASCII character as `\uXXXX` (surrogate pairs beyond U+FFFF), control characters as
//! `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`, so our frames are byte-identical to the
//! original's. The decoders accept any valid JSON: text or binary frames, any spacing, any
//! key order, unknown keys ignored.

use std::fmt::{self, Write as _};

use serde_json::Value;

/// One request of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Store `message` in `topic`. No reply.
    Put {
        /// The topic (any string; the empty string is a topic too).
        topic: String,
        /// The message text.
        message: String,
    },
    /// The oldest eligible message of `topic` this connection has not read. One reply.
    Get {
        /// The topic.
        topic: String,
    },
    /// The newest eligible message of `topic`; older unread ones are skipped. One reply.
    GetLatest {
        /// The topic.
        topic: String,
    },
    /// Stop the server (the Python client sends the topic `""`). No reply.
    Shutdown {
        /// Ignored by the server.
        topic: String,
    },
}

impl Request {
    /// The action name on the wire.
    pub fn action(&self) -> &'static str {
        match self {
            Request::Put { .. } => "put",
            Request::Get { .. } => "get",
            Request::GetLatest { .. } => "get_latest",
            Request::Shutdown { .. } => "shutdown",
        }
    }

    /// The topic the request names.
    pub fn topic(&self) -> &str {
        match self {
            Request::Put { topic, .. }
            | Request::Get { topic }
            | Request::GetLatest { topic }
            | Request::Shutdown { topic } => topic,
        }
    }

    /// Whether the server answers this request with exactly one reply frame.
    pub fn expects_reply(&self) -> bool {
        matches!(self, Request::Get { .. } | Request::GetLatest { .. })
    }
}

/// Why a frame could not be decoded; each maps to a WebSocket close code and reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Not valid UTF-8 JSON, or JSON that is not an object.
    #[error("invalid JSON: {0}")]
    InvalidJson(String),
    /// A required key is missing or not a string.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The `action` is none of the four the protocol knows.
    #[error("unknown action {0:?}; expected put, get, get_latest or shutdown")]
    UnknownAction(String),
    /// A reply that is not an object with a string (or null) `message`.
    #[error("invalid reply: {0}")]
    InvalidReply(String),
}

impl FrameError {
    /// The WebSocket close code the server sends for this error (RFC 6455 §7.4.1).
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::UnknownAction(_) => CLOSE_UNSUPPORTED,
            _ => CLOSE_INVALID_PAYLOAD,
        }
    }

    /// The close reason: the error's message, cut to fit a close frame.
    pub fn close_reason(&self) -> String {
        close_reason(&self.to_string())
    }
}

/// Close code: normal closure (after `shutdown`, or a client's `close`).
pub const CLOSE_NORMAL: u16 = 1000;
/// Close code: the server is going away (graceful shutdown).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code: a WebSocket protocol violation (reserved bits or opcodes, an unmasked or
/// misplaced frame).
pub const CLOSE_PROTOCOL: u16 = 1002;
/// Close code: unknown action.
pub const CLOSE_UNSUPPORTED: u16 = 1003;
/// Close code: malformed JSON or request.
pub const CLOSE_INVALID_PAYLOAD: u16 = 1007;
/// Close code: a request the server's policy refuses (`shutdown` when not allowed).
pub const CLOSE_POLICY: u16 = 1008;
/// Close code: message larger than the server's limit.
pub const CLOSE_TOO_BIG: u16 = 1009;
/// Close code: the server failed internally.
pub const CLOSE_INTERNAL: u16 = 1011;

/// The longest close reason a close frame carries (125 bytes minus the 2-byte code).
pub const MAX_CLOSE_REASON: usize = 123;

/// Cuts `reason` to at most [`MAX_CLOSE_REASON`] bytes on a character boundary.
pub fn close_reason(reason: &str) -> String {
    if reason.len() <= MAX_CLOSE_REASON {
        return reason.to_owned();
    }
    let mut end = MAX_CLOSE_REASON - 3;
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &reason[..end])
}

/// Decodes a request from the payload of a text or binary WebSocket message.
///
/// ```
/// use dsmq::format::{decode_request, Request};
/// let r = decode_request(br#"{"topic":"t","action":"get","extra":1}"#).unwrap();
/// assert_eq!(r, Request::Get { topic: "t".into() });
/// let e = decode_request(br#"{"action":"peek","topic":"t"}"#).unwrap_err();
/// assert_eq!(e.close_code(), 1003);
/// ```
pub fn decode_request(frame: &[u8]) -> Result<Request, FrameError> {
    // Fast path: a well-formed request straight into typed fields (unknown keys ignored).
    // Anything else goes through the `Value` path below, which names the problem.
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(borrow)]
        action: std::borrow::Cow<'a, str>,
        #[serde(borrow)]
        topic: std::borrow::Cow<'a, str>,
        #[serde(borrow, default)]
        message: Option<std::borrow::Cow<'a, str>>,
    }
    if let Ok(t) = serde_json::from_slice::<Typed<'_>>(frame) {
        match (t.action.as_ref(), t.message) {
            ("put", Some(message)) => {
                return Ok(Request::Put {
                    topic: t.topic.into_owned(),
                    message: message.into_owned(),
                });
            }
            ("get", _) => {
                return Ok(Request::Get {
                    topic: t.topic.into_owned(),
                });
            }
            ("get_latest", _) => {
                return Ok(Request::GetLatest {
                    topic: t.topic.into_owned(),
                });
            }
            _ => {}
        }
    }
    let value: Value =
        serde_json::from_slice(frame).map_err(|e| FrameError::InvalidJson(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(FrameError::InvalidJson(format!(
            "expected an object, got {}",
            kind(&value)
        )));
    };
    let mut take = |key: &str| -> Result<String, FrameError> {
        match map.remove(key) {
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(FrameError::InvalidRequest(format!(
                "`{key}` must be a string, got {}",
                kind(&other)
            ))),
            None => Err(FrameError::InvalidRequest(format!("missing `{key}`"))),
        }
    };
    let action = take("action")?;
    let request = match action.as_str() {
        "put" => {
            let topic = take("topic")?;
            let message = take("message")?;
            Request::Put { topic, message }
        }
        "get" => Request::Get {
            topic: take("topic")?,
        },
        "get_latest" => Request::GetLatest {
            topic: take("topic")?,
        },
        "shutdown" => Request::Shutdown {
            // The Python client always sends a topic; be lenient when it is absent.
            topic: match take("topic") {
                Ok(t) => t,
                Err(FrameError::InvalidRequest(m)) if m.starts_with("missing") => String::new(),
                Err(e) => return Err(e),
            },
        },
        _ => return Err(FrameError::UnknownAction(action)),
    };
    Ok(request)
}

/// Encodes a request exactly as the Python client does.
///
/// ```
/// use dsmq::format::{encode_request, Request};
/// let put = Request::Put { topic: "greetings".into(), message: "h\u{e9}llo".into() };
/// assert_eq!(
///     encode_request(&put),
///     r#"{"action": "put", "topic": "greetings", "message": "h\u00e9llo"}"#
/// );
/// ```
pub fn encode_request(request: &Request) -> String {
    let mut out = String::with_capacity(48 + request.topic().len());
    out.push_str(r#"{"action": "#);
    push_json_str(&mut out, request.action());
    out.push_str(r#", "topic": "#);
    push_json_str(&mut out, request.topic());
    if let Request::Put { message, .. } = request {
        out.reserve(message.len() + 14);
        out.push_str(r#", "message": "#);
        push_json_str(&mut out, message);
    }
    out.push('}');
    out
}

/// Encodes a reply exactly as the Python server does: `{"message": "..."}`.
///
/// ```
/// assert_eq!(dsmq::format::encode_reply("x\n"), r#"{"message": "x\n"}"#);
/// assert_eq!(dsmq::format::encode_reply(""), r#"{"message": ""}"#);
/// ```
pub fn encode_reply(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 16);
    out.push_str(r#"{"message": "#);
    push_json_str(&mut out, message);
    out.push('}');
    out
}

/// Decodes a reply: the text of `message`, with `null` read as `""` (the Python server
/// stores a JSON `null` message as NULL and sends it back so).
pub fn decode_reply(frame: &[u8]) -> Result<String, FrameError> {
    let value: Value =
        serde_json::from_slice(frame).map_err(|e| FrameError::InvalidReply(e.to_string()))?;
    let Value::Object(mut map) = value else {
        return Err(FrameError::InvalidReply(format!(
            "expected an object, got {}",
            kind(&value)
        )));
    };
    match map.remove("message") {
        Some(Value::String(s)) => Ok(s),
        Some(Value::Null) => Ok(String::new()),
        Some(other) => Err(FrameError::InvalidReply(format!(
            "`message` must be a string, got {}",
            kind(&other)
        ))),
        None => Err(FrameError::InvalidReply("missing `message`".into())),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Appends `s` as a JSON string literal, escaped as Python's `json.dumps(ensure_ascii=True)`.
pub fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let escape: Option<&str> = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '\n' => Some("\\n"),
            '\r' => Some("\\r"),
            '\t' => Some("\\t"),
            '\u{8}' => Some("\\b"),
            '\u{c}' => Some("\\f"),
            ' '..='~' => continue,
            _ => None,
        };
        out.push_str(&s[plain..i]);
        plain = i + c.len_utf8();
        match escape {
            Some(e) => out.push_str(e),
            None => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    // Writing to a String cannot fail.
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

/// A request or reply frame shown for logs: the text, cut to 200 bytes.
pub(crate) struct Shown<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = String::from_utf8_lossy(self.0);
        if text.len() > 200 {
            let mut end = 200;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            write!(f, "{:?}... ({} bytes)", &text[..end], self.0.len())
        } else {
            write!(f, "{text:?}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(topic: &str, message: &str) -> Request {
        Request::Put {
            topic: topic.into(),
            message: message.into(),
        }
    }

    /// The reference exchange of the specification, §2.2, byte for byte.
    #[test]
    fn reference_exchange_frames() {
        let get = Request::Get {
            topic: "greetings".into(),
        };
        assert_eq!(
            encode_request(&get),
            r#"{"action": "get", "topic": "greetings"}"#
        );
        assert_eq!(encode_reply(""), r#"{"message": ""}"#);
        assert_eq!(
            encode_request(&put("greetings", "hello world!")),
            r#"{"action": "put", "topic": "greetings", "message": "hello world!"}"#
        );
        assert_eq!(
            encode_request(&put("greetings", "héllo \"2\"")),
            r#"{"action": "put", "topic": "greetings", "message": "h\u00e9llo \"2\""}"#
        );
        assert_eq!(
            encode_reply("hello world!"),
            r#"{"message": "hello world!"}"#
        );
        assert_eq!(
            encode_reply("héllo \"2\""),
            r#"{"message": "h\u00e9llo \"2\""}"#
        );
        assert_eq!(
            encode_request(&Request::GetLatest { topic: "t2".into() }),
            r#"{"action": "get_latest", "topic": "t2"}"#
        );
        assert_eq!(
            encode_request(&Request::Shutdown {
                topic: String::new()
            }),
            r#"{"action": "shutdown", "topic": ""}"#
        );
        // And every one of them decodes back.
        for r in [
            get,
            put("greetings", "héllo \"2\""),
            Request::GetLatest { topic: "t2".into() },
            Request::Shutdown {
                topic: String::new(),
            },
        ] {
            assert_eq!(decode_request(encode_request(&r).as_bytes()).unwrap(), r);
        }
    }

    #[test]
    fn escaping_matches_python_json_dumps() {
        // Expected strings produced by Python 3: json.dumps(s).
        let cases = [
            ("\u{0}\u{1}\u{1f}", r#""\u0000\u0001\u001f""#),
            ("\u{8}\u{c}\n\r\t", r#""\b\f\n\r\t""#),
            ("\u{7f}", r#""\u007f""#),
            ("~ /", r#""~ /""#),
            ("é€", r#""\u00e9\u20ac""#),
            ("\u{1F600}", r#""\ud83d\ude00""#),
            ("a\\b\"c", r#""a\\b\"c""#),
            ("", r#""""#),
        ];
        for (input, expected) in cases {
            let mut out = String::new();
            push_json_str(&mut out, input);
            assert_eq!(out, expected, "{input:?}");
            // serde_json reads our escapes back to the same text.
            assert_eq!(serde_json::from_str::<String>(&out).unwrap(), input);
        }
    }

    #[test]
    fn requests_accept_any_spacing_order_binary_and_extra_keys() {
        let want = put("t", "m");
        for frame in [
            &br#"{"action":"put","topic":"t","message":"m"}"#[..],
            br#"{ "message" : "m" , "topic" : "t" , "action" : "put" , "x": [1] }"#,
            b"\n{\"action\":\t\"put\",\"topic\":\"t\",\"message\":\"m\"}\n",
        ] {
            assert_eq!(decode_request(frame).unwrap(), want);
        }
        assert_eq!(
            decode_request(br#"{"action": "shutdown"}"#).unwrap(),
            Request::Shutdown {
                topic: String::new()
            }
        );
    }

    #[test]
    fn malformed_requests_name_the_problem_and_the_close_code() {
        let cases: [(&[u8], u16, &str); 10] = [
            (b"not json", 1007, "invalid JSON: expected ident"),
            (
                b"[1, 2]",
                1007,
                "invalid JSON: expected an object, got an array",
            ),
            (b"\xff\xfe", 1007, "invalid JSON:"),
            (
                br#"{"topic": "t"}"#,
                1007,
                "invalid request: missing `action`",
            ),
            (
                br#"{"action": "get"}"#,
                1007,
                "invalid request: missing `topic`",
            ),
            (
                br#"{"action": "put", "topic": "t"}"#,
                1007,
                "invalid request: missing `message`",
            ),
            (
                br#"{"action": "put", "topic": "t", "message": 5}"#,
                1007,
                "invalid request: `message` must be a string, got a number",
            ),
            (
                br#"{"action": "put", "topic": "t", "message": null}"#,
                1007,
                "invalid request: `message` must be a string, got null",
            ),
            (
                br#"{"action": 1, "topic": "t"}"#,
                1007,
                "invalid request: `action` must be a string, got a number",
            ),
            (
                br#"{"action": "delete", "topic": "t"}"#,
                1003,
                r#"unknown action "delete"; expected put, get, get_latest or shutdown"#,
            ),
        ];
        for (frame, code, reason) in cases {
            let err = decode_request(frame).unwrap_err();
            assert_eq!(err.close_code(), code, "{}", Shown(frame));
            assert!(
                err.close_reason().starts_with(reason),
                "{}: {}",
                Shown(frame),
                err.close_reason()
            );
        }
    }

    #[test]
    fn close_reasons_fit_a_close_frame() {
        let long = format!(r#"{{"action": "{}", "topic": "t"}}"#, "é".repeat(200));
        let reason = decode_request(long.as_bytes()).unwrap_err().close_reason();
        assert!(reason.len() <= MAX_CLOSE_REASON, "{}", reason.len());
        assert!(reason.starts_with("unknown action \"éé"));
        assert!(reason.ends_with("..."));
    }

    #[test]
    fn replies_decode_with_null_as_empty_and_reject_other_shapes() {
        assert_eq!(decode_reply(br#"{"message": "h\u00e9"}"#).unwrap(), "hé");
        assert_eq!(decode_reply(br#"{"message": null}"#).unwrap(), "");
        assert_eq!(
            decode_reply(br#"{"msg": "x"}"#).unwrap_err().to_string(),
            "invalid reply: missing `message`"
        );
        assert_eq!(
            decode_reply(br#"{"message": 3}"#).unwrap_err().to_string(),
            "invalid reply: `message` must be a string, got a number"
        );
        assert!(decode_reply(b"\"x\"").is_err());
        assert!(decode_reply(b"{").is_err());
    }
}
