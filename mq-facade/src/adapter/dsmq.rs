//! `dsmq://HOST:PORT/TOPIC?encoding=text|base64&max_message_bytes=N`: a topic of a dsmq
//! server (this workspace's or Python's).
//!
//! Mapping: a handle is one WebSocket connection bound to one topic. Delivery is broadcast:
//! every consumer receives every message sent after it was opened (the original's
//! one-to-many model). `send` is the unacknowledged `put` ([`Durability::Buffered`]);
//! `flush(Written)` makes a round trip, after which the server holds everything sent before
//! it: in its memory (a crash of the producer loses nothing, a crash of the server loses
//! all), until its retention ends (600 s by default) or its memory bound evicts it. `try_recv` is one `get` (`Ok(None)` for the protocol's `""`); `recv_timeout` asks
//! again with a short backoff until its deadline. A receive consumes: `ack` does nothing,
//! `nack` is unsupported.
//!
//! Payloads: dsmq messages are text, and `""` means "nothing". With `encoding=text` (the
//! default, for sharing topics with Python programs) a payload must be non-empty UTF-8, or
//! the send is `Unsupported`. With `encoding=base64` any bytes go: each message is the
//! standard base64 of the payload, and the empty payload is sent as `=`.
//!
//! Size: a server closes the connection on a request larger than its limit (1 MiB by
//! default, for this workspace's server and Python's alike; `max_message_bytes` in the URL
//! names another), and a put is not acknowledged, so an oversized send would say Ok and
//! vanish. The producer refuses it first with [`Error::TooLarge`]:
//! [`Capabilities::max_message_size`] is the largest payload whose request fits. With
//! `encoding=text` the size is the message's length as JSON text (equal to the payload's
//! for ASCII without control characters or quotes; `é` counts 6, as `\u00e9`).

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::open::{Params, invalid};
use crate::{
    Capabilities, Consumer, Delivery, Durability, Error, Meta, Producer, Receipt, Result,
    SendOptions, Tag, Wait,
};

const BACKEND: &str = "dsmq";

/// How payload bytes become message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Text,
    Base64,
}

/// What a `dsmq://` URL asks for.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    host: String,
    port: u16,
    topic: String,
    encoding: Encoding,
    /// The server's limit on one request (the whole JSON text).
    max_request: usize,
}

/// The request limit of this workspace's server and of Python dsmq's (websockets) by
/// default.
const DEFAULT_MAX_REQUEST: usize = 1 << 20;

impl Target {
    fn name(&self) -> String {
        format!("dsmq://{}:{}/{}", self.host, self.port, self.topic)
    }

    /// Room for the message's JSON text in a put to this topic (its escaped length, without
    /// the quotes).
    fn room(&self) -> usize {
        let empty_put = dsmq::format::encode_request(&dsmq::format::Request::Put {
            topic: self.topic.clone(),
            message: String::new(),
        });
        self.max_request.saturating_sub(empty_put.len())
    }

    /// The largest payload whose put fits.
    fn max_payload(&self) -> usize {
        match self.encoding {
            Encoding::Text => self.room(),
            // 4 characters per 3 bytes (padded); never escaped.
            Encoding::Base64 => self.room() / 4 * 3,
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::minimal(BACKEND);
        caps.delivery = Delivery::Broadcast;
        caps.durability = Durability::Written;
        caps.cross_process = true;
        caps.max_message_size = Some(self.max_payload());
        caps
    }
}

/// Parses `dsmq://HOST[:PORT]/TOPIC?encoding=text|base64` (port 30008 by default).
pub(crate) fn parse(raw: &str, url: &url::Url) -> Result<Target> {
    let mut params = Params::new(raw, url)?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err(invalid(
            raw,
            "missing host: expected dsmq://HOST:PORT/TOPIC",
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(raw, "dsmq has no users or passwords"));
    }
    if url.fragment().is_some() {
        return Err(invalid(raw, "unexpected fragment `#...`"));
    }
    let Some(topic) = url.path().strip_prefix('/') else {
        return Err(invalid(
            raw,
            "missing topic: expected dsmq://HOST:PORT/TOPIC (dsmq://HOST:PORT/ is the empty topic)",
        ));
    };
    let topic = percent_encoding::percent_decode_str(topic)
        .decode_utf8()
        .map_err(|_| invalid(raw, "the topic is not valid UTF-8 once percent-decoded"))?
        .into_owned();
    let encoding = params.choose(
        "encoding",
        &[("text", Encoding::Text), ("base64", Encoding::Base64)],
    )?;
    let max_request = params
        .take::<usize>("max_message_bytes")?
        .unwrap_or(DEFAULT_MAX_REQUEST);
    params.finish()?;
    Ok(Target {
        host: host.to_owned(),
        port: url.port().unwrap_or(dsmq::client::DEFAULT_PORT),
        topic,
        encoding,
        max_request,
    })
}

/// Maps the crate's errors onto the facade's.
fn map_error(target: &Target, e: dsmq::Error) -> Error {
    match e {
        dsmq::Error::Closed { code, reason } => Error::Closed {
            queue: target.name(),
            reason: format!("code {code}: {reason}").into(),
        },
        dsmq::Error::Timeout(after) => Error::Timeout {
            what: format!("the server of {} ({after:?})", target.name()).into(),
        },
        dsmq::Error::Frame(e) => Error::Corrupt {
            location: format!("a reply from {}", target.name()),
            detail: e.to_string(),
        },
        dsmq::Error::Protocol(detail) => Error::Corrupt {
            location: format!("a reply from {}", target.name()),
            detail,
        },
        other => Error::backend(BACKEND, other),
    }
}

/// How long opening a handle waits for the TCP connection and the WebSocket handshake: a
/// host that does not answer, or a port that accepts and stays silent, fails the open.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

fn connect(target: &Target) -> Result<dsmq::blocking::Client> {
    dsmq::blocking::Client::connect_timeout(&target.host, target.port, CONNECT_TIMEOUT)
        .map_err(|e| map_error(target, e))
}

/// Opens a producer: a connection that puts into the topic.
pub(crate) fn producer(target: &Target) -> Result<Box<dyn Producer>> {
    Ok(Box::new(DsmqProducer {
        client: connect(target)?,
        target: target.clone(),
    }))
}

/// Opens a consumer: a connection whose reads start with what is sent from now on.
pub(crate) fn consumer(target: &Target) -> Result<Box<dyn Consumer>> {
    Ok(Box::new(DsmqConsumer {
        client: connect(target)?,
        target: target.clone(),
        delivered: 0,
    }))
}

#[derive(Debug)]
struct DsmqProducer {
    client: dsmq::blocking::Client,
    target: Target,
}

impl DsmqProducer {
    fn encode(&self, payload: &[u8]) -> Result<String> {
        match self.target.encoding {
            Encoding::Base64 if payload.is_empty() => Ok("=".to_owned()),
            Encoding::Base64 => {
                self.target.capabilities().check_size(payload.len())?;
                Ok(STANDARD.encode(payload))
            }
            Encoding::Text if payload.is_empty() => Err(Error::unsupported(
                BACKEND,
                "the empty message (the protocol cannot tell it from no message; use encoding=base64)",
            )),
            Encoding::Text => match std::str::from_utf8(payload) {
                Ok(text) => {
                    let max = self.target.room();
                    if text.len() > max {
                        return Err(Error::TooLarge {
                            size: text.len(),
                            max,
                        });
                    }
                    // Escaping only grows the text: measure it when it might not fit.
                    let mut json = String::new();
                    if text.len() * 6 > max {
                        dsmq::format::push_json_str(&mut json, text);
                        let size = json.len() - 2;
                        if size > max {
                            return Err(Error::TooLarge { size, max });
                        }
                    }
                    Ok(text.to_owned())
                }
                Err(e) => Err(Error::unsupported(
                    BACKEND,
                    format!(
                        "a payload that is not UTF-8 (invalid byte at offset {}; use encoding=base64)",
                        e.valid_up_to()
                    ),
                )),
            },
        }
    }
}

impl Producer for DsmqProducer {
    fn send_with(&mut self, payload: &[u8], options: &SendOptions, _wait: Wait) -> Result<Receipt> {
        options.check(&self.target.capabilities(), BACKEND)?;
        let text = self.encode(payload)?;
        self.client
            .put(&self.target.topic, &text)
            .map_err(|e| map_error(&self.target, e))?;
        Ok(Receipt::new(None, Durability::Buffered))
    }

    fn flush(&mut self, level: Durability) -> Result<()> {
        self.target.capabilities().check_flush(level)?;
        if level >= Durability::Written {
            // The server handles a connection's frames in order: once a reply to a `get`
            // arrives, every earlier put of this connection is stored. The topic is one no
            // one writes to, so the reply is small.
            self.client
                .get_raw("\u{0}dsmq-facade-flush")
                .map_err(|e| map_error(&self.target, e))?;
        }
        Ok(())
    }

    fn capabilities(&self) -> Capabilities {
        self.target.capabilities()
    }
}

#[derive(Debug)]
struct DsmqConsumer {
    client: dsmq::blocking::Client,
    target: Target,
    delivered: u64,
}

impl DsmqConsumer {
    fn decode(&self, text: String, buf: &mut Vec<u8>) -> Result<()> {
        match self.target.encoding {
            Encoding::Text => buf.extend_from_slice(text.as_bytes()),
            Encoding::Base64 if text == "=" => {}
            Encoding::Base64 => {
                STANDARD
                    .decode_vec(text.as_bytes(), buf)
                    .map_err(|e| Error::Corrupt {
                        location: format!(
                            "message {} of {}",
                            self.delivered + 1,
                            self.target.name()
                        ),
                        detail: format!("not base64 (the URL says encoding=base64): {e}"),
                    })?
            }
        }
        Ok(())
    }
}

impl Consumer for DsmqConsumer {
    fn recv_into(&mut self, buf: &mut Vec<u8>, wait: Wait) -> Result<Option<Meta>> {
        buf.clear();
        let deadline = wait.deadline();
        let mut pause = Duration::from_millis(1);
        loop {
            let got = self
                .client
                .get(&self.target.topic)
                .map_err(|e| map_error(&self.target, e))?;
            if let Some(text) = got {
                self.decode(text, buf)?;
                self.delivered += 1;
                return Ok(Some(Meta::new(Tag::from_raw(self.delivered))));
            }
            let left = match deadline {
                Some(at) => at.saturating_duration_since(Instant::now()),
                None => pause,
            };
            if left.is_zero() {
                return Ok(None);
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(16));
        }
    }

    fn ack(&mut self, _tag: Tag) -> Result<()> {
        // A receive already consumed the message (for this connection).
        Ok(())
    }

    fn nack(&mut self, _tag: Tag, _requeue: bool) -> Result<()> {
        Err(Error::unsupported(
            BACKEND,
            "nack (a receive consumes; dsmq has no acknowledgements)",
        ))
    }

    fn capabilities(&self) -> Capabilities {
        self.target.capabilities()
    }
}

#[cfg(test)]
mod tests {
    use crate::{Error, Wait};

    /// A server on a free loopback port, on a runtime of its own.
    fn server() -> (tokio::runtime::Runtime, dsmq::ServerHandle, u16) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let server = rt
            .block_on(dsmq::Server::bind(
                "127.0.0.1:0",
                dsmq::ServerConfig::default(),
            ))
            .unwrap();
        let port = server.local_addr().port();
        let handle = server.handle();
        rt.spawn(server.run());
        (rt, handle, port)
    }

    #[test]
    fn text_encoding_is_the_wire_text_and_refuses_what_it_cannot_carry() {
        let (_rt, handle, port) = server();
        let url = format!("dsmq://127.0.0.1:{port}/caf%C3%A9");
        let mut rx = crate::open_consumer(&url).unwrap();
        let mut tx = crate::open_producer(&url).unwrap();
        for (payload, why) in [(&b""[..], "the empty message"), (b"\xff", "not UTF-8")] {
            match tx.send(payload) {
                Err(Error::Unsupported { what, .. }) => assert!(what.contains(why), "{what}"),
                other => panic!("{payload:?}: {other:?}"),
            }
        }
        tx.send("héllo".as_bytes()).unwrap();
        tx.flush(crate::Durability::Written).unwrap();
        // A plain dsmq client on the decoded topic sees the text as sent.
        let mut plain = dsmq::blocking::Client::connect("127.0.0.1", port).unwrap();
        tx.send(b"second").unwrap();
        tx.flush(crate::Durability::Written).unwrap();
        assert_eq!(rx.recv().unwrap().payload, "héllo".as_bytes());
        assert_eq!(plain.get("café").unwrap().as_deref(), Some("second"));
        assert_eq!(
            rx.recv_with(Wait::NoWait).unwrap().unwrap().payload,
            b"second"
        );
        // A message that is not base64 on a base64 handle is a clear Corrupt error.
        let mut b64 = crate::open_consumer(&format!("{url}?encoding=base64")).unwrap();
        plain.put("café", "not base64!").unwrap();
        match b64.recv_timeout(std::time::Duration::from_secs(20)) {
            Err(Error::Corrupt { location, detail }) => {
                assert!(
                    location.contains("message 1 of dsmq://127.0.0.1"),
                    "{location}"
                );
                assert!(detail.contains("not base64"), "{detail}");
            }
            other => panic!("{other:?}"),
        }
        // The server going away is Closed.
        handle.shutdown();
        match rx.recv_timeout(std::time::Duration::from_secs(20)) {
            Err(Error::Closed { reason, .. }) => assert!(reason.contains("1001"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    /// A payload whose put would exceed the server's frame limit is `TooLarge` before it
    /// is sent: the server would close the connection (1009) and drop it, after `send`
    /// had said Ok.
    #[test]
    fn a_payload_over_the_frame_limit_is_too_large_and_the_limit_itself_passes() {
        let (_rt, _handle, port) = server();
        for encoding in ["base64", "text"] {
            let url = format!("dsmq://127.0.0.1:{port}/big?encoding={encoding}");
            let mut rx = crate::open_consumer(&url).unwrap();
            let mut tx = crate::open_producer(&url).unwrap();
            let max = tx.capabilities().max_message_size.expect("a limit");
            assert!(max > 700 << 10, "{encoding}: {max}");
            match tx.try_send(&vec![b'x'; max + 1]) {
                Err(Error::TooLarge { size, max: m }) => assert_eq!((size, m), (max + 1, max)),
                other => panic!("{encoding}: {other:?}"),
            }
            tx.send(&vec![b'y'; max]).unwrap();
            tx.flush(crate::Durability::Written).unwrap();
            let got = rx.recv_timeout(std::time::Duration::from_secs(20)).unwrap();
            assert_eq!(got.map(|m| m.payload.len()), Some(max), "{encoding}");
        }
        // Text that escapes grows on the wire: measured there, in JSON bytes.
        let url = format!("dsmq://127.0.0.1:{port}/big");
        let mut tx = crate::open_producer(&url).unwrap();
        let max = tx.capabilities().max_message_size.unwrap();
        let accents = "\u{e9}".repeat(max / 2);
        match tx.try_send(accents.as_bytes()) {
            Err(Error::TooLarge { size, max: m }) => assert_eq!((size, m), (6 * (max / 2), max)),
            other => panic!("{other:?}"),
        }
        // The URL can name a server with another limit.
        let small = crate::open_producer(&format!("{url}?max_message_bytes=1000")).unwrap();
        let small_max = small.capabilities().max_message_size.unwrap();
        assert!(small_max < 1000, "{small_max}");
    }
}
