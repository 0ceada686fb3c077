//! Opening a queue by URL: the scheme picks the backend, the rest its queue and options.

use std::collections::BTreeMap;
use std::str::FromStr;

use url::Url;

use crate::{Consumer, Error, Producer, Result};

/// Every scheme the facade knows, with the feature that compiles its adapter in
/// (`None`: no adapter exists yet, whatever the features).
const SCHEMES: &[(&str, Option<&str>)] = &[
    ("mem", Some("mem")),
    ("dmq", Some("dmq")),
    ("ddmq", Some("ddmq")),
    ("dsmq", Some("dsmq")),
    ("shmq", Some("shmq")),
    ("duraqueue", Some("duraqueue")),
    ("amqp", Some("amqp")),
];

/// Opens the sending side of the queue at `url`.
///
/// | URL | backend |
/// |---|---|
/// | `mem://NAME?capacity=N&max_message_size=BYTES&max_priority=P` | [`mem`](crate::mem) (feature `mem`, default) |
/// | `duraqueue:///PATH?size=8MiB&format=v1\|v2&sync=msync\|fdatasync` | `duraqueue` (feature `duraqueue`) |
/// | `dmq:///BASE?framing=newlines\|nulls\|frames\|raw&durability=pagecache\|data\|full` | `dmq` (feature `dmq`): files `BASE0`, `BASE1`, `BASEmap` |
/// | `ddmq:///ROOT/QUEUE?durability=none\|fsync&order=numeric\|lexicographic` | `ddmq` (feature `ddmq`) |
/// | `shmq://KEY?words=N&slots=N&mode=blocking\|cyclic&format=native\|go` | `shmq` (feature `shmq`) |
/// | `amqp://USER:PASS@HOST:PORT/VHOST?queue=NAME&mode=classic\|quorum\|stream&max_priority=P&prefetch=N&in_flight=N&max_age=7D&offset=next\|first\|last` | RabbitMQ (feature `amqp`) |
/// | `dsmq://HOST:PORT/TOPIC?encoding=text\|base64&max_message_bytes=N` | `dsmq` (feature `dsmq`): a topic of a dsmq server, broadcast |
///
/// Errors: [`Error::InvalidUrl`] naming the bad part (scheme, name, parameter and value),
/// [`Error::BackendUnavailable`] when the backend is not compiled in, or the backend's own
/// error when opening fails.
///
/// ```
/// let mut producer: Box<dyn mq_facade::Producer> = mq_facade::open_producer("mem://doc-orders")?;
/// producer.send(b"hello")?;
/// let mut consumer = mq_facade::open_consumer("mem://doc-orders")?;
/// assert_eq!(consumer.recv()?.payload, b"hello");
/// # Ok::<(), mq_facade::Error>(())
/// ```
pub fn open_producer(url: &str) -> Result<Box<dyn Producer>> {
    match Target::parse(url)? {
        #[cfg(feature = "mem")]
        Target::Mem(queue) => Ok(Box::new(queue.producer())),
        #[cfg(feature = "duraqueue")]
        Target::Duraqueue(target) => crate::adapter::duraqueue::producer(&target),
        #[cfg(feature = "dmq")]
        Target::Dmq(target) => crate::adapter::dmq::producer(&target),
        #[cfg(feature = "ddmq")]
        Target::Ddmq(target) => crate::adapter::ddmq::producer(&target),
        #[cfg(feature = "dsmq")]
        Target::Dsmq(target) => crate::adapter::dsmq::producer(&target),
        #[cfg(feature = "shmq")]
        Target::Shmq(target) => crate::adapter::shmq::producer(&target),
        #[cfg(feature = "amqp")]
        Target::Amqp(target) => crate::adapter::amqp::producer(&target),
    }
}

/// Opens the receiving side of the queue at `url`; see [`open_producer`] for the URLs.
pub fn open_consumer(url: &str) -> Result<Box<dyn Consumer>> {
    match Target::parse(url)? {
        #[cfg(feature = "mem")]
        Target::Mem(queue) => Ok(Box::new(queue.consumer())),
        #[cfg(feature = "duraqueue")]
        Target::Duraqueue(target) => crate::adapter::duraqueue::consumer(&target),
        #[cfg(feature = "dmq")]
        Target::Dmq(target) => crate::adapter::dmq::consumer(&target),
        #[cfg(feature = "ddmq")]
        Target::Ddmq(target) => crate::adapter::ddmq::consumer(&target),
        #[cfg(feature = "dsmq")]
        Target::Dsmq(target) => crate::adapter::dsmq::consumer(&target),
        #[cfg(feature = "shmq")]
        Target::Shmq(target) => crate::adapter::shmq::consumer(&target),
        #[cfg(feature = "amqp")]
        Target::Amqp(target) => crate::adapter::amqp::consumer(&target),
    }
}

/// A parsed URL, ready to open.
enum Target {
    #[cfg(feature = "mem")]
    Mem(crate::mem::MemQueue),
    #[cfg(feature = "duraqueue")]
    Duraqueue(crate::adapter::duraqueue::Target),
    #[cfg(feature = "dmq")]
    Dmq(crate::adapter::dmq::Target),
    #[cfg(feature = "ddmq")]
    Ddmq(crate::adapter::ddmq::Target),
    #[cfg(feature = "dsmq")]
    Dsmq(crate::adapter::dsmq::Target),
    #[cfg(feature = "shmq")]
    Shmq(crate::adapter::shmq::Target),
    #[cfg(feature = "amqp")]
    Amqp(crate::adapter::amqp::Target),
}

impl Target {
    fn parse(raw: &str) -> Result<Target> {
        let url = Url::parse(raw).map_err(|e| invalid(raw, e.to_string()))?;
        let scheme = url.scheme();
        let Some(&(_, feature)) = SCHEMES.iter().find(|(name, _)| *name == scheme) else {
            let known: Vec<&str> = SCHEMES.iter().map(|(name, _)| *name).collect();
            return Err(invalid(
                raw,
                format!("unknown scheme `{scheme}` (known: {})", known.join(", ")),
            ));
        };
        match scheme {
            #[cfg(feature = "mem")]
            "mem" => {
                let mut params = Params::new(raw, &url)?;
                let name = single_name(raw, &url)?;
                let wanted = crate::mem::Requested {
                    capacity: params.take("capacity")?,
                    max_message_size: params.take("max_message_size")?,
                    max_priority: params.take("max_priority")?,
                };
                params.finish()?;
                Ok(Target::Mem(crate::mem::MemQueue::open_requested(
                    &name, &wanted,
                )?))
            }
            #[cfg(feature = "duraqueue")]
            "duraqueue" => crate::adapter::duraqueue::parse(raw, &url).map(Target::Duraqueue),
            #[cfg(feature = "dmq")]
            "dmq" => crate::adapter::dmq::parse(raw, &url).map(Target::Dmq),
            #[cfg(feature = "ddmq")]
            "ddmq" => crate::adapter::ddmq::parse(raw, &url).map(Target::Ddmq),
            #[cfg(feature = "dsmq")]
            "dsmq" => crate::adapter::dsmq::parse(raw, &url).map(Target::Dsmq),
            #[cfg(feature = "shmq")]
            "shmq" => crate::adapter::shmq::parse(raw, &url).map(Target::Shmq),
            #[cfg(feature = "amqp")]
            "amqp" => crate::adapter::amqp::parse(raw, &url).map(Target::Amqp),
            _ => Err(Error::BackendUnavailable {
                scheme: scheme.to_owned(),
                hint: match feature {
                    Some(feature) => format!("enable the `{feature}` feature of mq-facade").into(),
                    None => "its facade adapter is not implemented yet".into(),
                },
            }),
        }
    }
}

pub(crate) fn invalid(url: &str, reason: impl Into<String>) -> Error {
    Error::InvalidUrl {
        url: redact(url),
        reason: reason.into(),
    }
}

/// `url` with the password of its `user:password@` replaced by `***`: error messages end up
/// in logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host}{tail}"),
        None => url.to_owned(),
    }
}

/// The queue name of `scheme://NAME`: a host and nothing else (no path, user or port).
#[cfg_attr(not(any(feature = "mem", feature = "shmq")), allow(dead_code))]
pub(crate) fn single_name(raw: &str, url: &Url) -> Result<String> {
    let name = url.host_str().unwrap_or_default();
    // The URL parser drops an empty port (`q:`) and accepts `[::1]`: check the raw text.
    let authority = raw.split_once("://").map_or("", |(_, rest)| {
        rest.split(['/', '?', '#']).next().unwrap_or_default()
    });
    if authority.contains([':', '@', '[']) {
        return Err(invalid(raw, "a queue name takes no port, user or password"));
    }
    let name = percent_encoding::percent_decode_str(name)
        .decode_utf8()
        .map_err(|_| {
            invalid(
                raw,
                "the queue name is not valid UTF-8 once percent-decoded",
            )
        })?;
    if name.is_empty() {
        return Err(invalid(
            raw,
            format!("missing queue name: expected {}://NAME", url.scheme()),
        ));
    }
    if !matches!(url.path(), "" | "/") {
        return Err(invalid(
            raw,
            format!("unexpected path `{}` after the queue name", url.path()),
        ));
    }
    if url.fragment().is_some() {
        return Err(invalid(raw, "unexpected fragment `#...`"));
    }
    Ok(name.into_owned())
}

/// The file path of `scheme:///absolute/path` (no host: the file is on this machine).
#[cfg_attr(
    not(any(feature = "duraqueue", feature = "dmq", feature = "ddmq")),
    allow(dead_code)
)]
pub(crate) fn local_path(raw: &str, url: &Url) -> Result<std::path::PathBuf> {
    if url.host_str().is_some_and(|h| !h.is_empty()) {
        return Err(invalid(
            raw,
            format!(
                "unexpected host `{}`: a local file is {}:///absolute/path",
                url.host_str().unwrap_or_default(),
                url.scheme()
            ),
        ));
    }
    let path = percent_encoding::percent_decode_str(url.path())
        .decode_utf8()
        .map_err(|_| invalid(raw, "the path is not valid UTF-8 once percent-decoded"))?;
    if path.is_empty() || path == "/" {
        return Err(invalid(
            raw,
            format!(
                "missing file path: expected {}:///absolute/path",
                url.scheme()
            ),
        ));
    }
    Ok(std::path::PathBuf::from(path.into_owned()))
}

/// Query parameters, taken one by one with their types; whatever is left over is an error.
#[cfg_attr(not(feature = "mem"), allow(dead_code))]
pub(crate) struct Params<'a> {
    raw: &'a str,
    pairs: BTreeMap<String, String>,
}

#[cfg_attr(not(feature = "mem"), allow(dead_code))]
impl<'a> Params<'a> {
    pub(crate) fn new(raw: &'a str, url: &Url) -> Result<Self> {
        let mut pairs = BTreeMap::new();
        for (key, value) in url.query_pairs() {
            if pairs.insert(key.to_string(), value.to_string()).is_some() {
                return Err(invalid(raw, format!("parameter `{key}` given twice")));
            }
        }
        Ok(Params { raw, pairs })
    }

    /// Removes `key` and parses its value as `T`.
    pub(crate) fn take<T: FromStr>(&mut self, key: &str) -> Result<Option<T>>
    where
        T::Err: std::fmt::Display,
    {
        let Some(value) = self.pairs.remove(key) else {
            return Ok(None);
        };
        value.parse().map(Some).map_err(|e| {
            invalid(
                self.raw,
                format!(
                    "parameter `{key}`: `{value}` is not a valid {}: {e}",
                    std::any::type_name::<T>()
                ),
            )
        })
    }

    /// Removes `key`, one of `choices` (the first is the default when it is absent).
    #[cfg_attr(
        not(any(feature = "duraqueue", feature = "dmq", feature = "ddmq")),
        allow(dead_code)
    )]
    #[cfg_attr(not(any(feature = "duraqueue", feature = "shmq")), allow(dead_code))]
    pub(crate) fn choose<T: Copy>(&mut self, key: &str, choices: &[(&str, T)]) -> Result<T> {
        let Some(value) = self.pairs.remove(key) else {
            return Ok(choices[0].1);
        };
        match choices.iter().find(|(name, _)| *name == value) {
            Some(&(_, choice)) => Ok(choice),
            None => {
                let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                Err(invalid(
                    self.raw,
                    format!(
                        "parameter `{key}`: `{value}` is not one of {}",
                        names.join(", ")
                    ),
                ))
            }
        }
    }

    /// Fails on the first parameter no one took.
    pub(crate) fn finish(self) -> Result<()> {
        match self.pairs.keys().next() {
            Some(key) => Err(invalid(self.raw, format!("unknown parameter `{key}`"))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted_in_url_errors() {
        for (url, shown) in [
            (
                "amqp://guest:s3cret@host:5672/%2f?queue=q",
                "amqp://guest:***@host:5672/%2f?queue=q",
            ),
            ("amqp://u:p:w@h/v?x=a@b", "amqp://u:***@h/v?x=a@b"),
            ("amqp://user@host/v", "amqp://user@host/v"),
            ("mem://q", "mem://q"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(redact(url), shown);
        }
    }

    fn reason(url: &str) -> String {
        match open_producer(url) {
            Err(Error::InvalidUrl { url: u, reason }) => {
                assert_eq!(u, redact(url));
                reason
            }
            Err(other) => panic!("{url}: expected InvalidUrl, got {other}"),
            Ok(_) => panic!("{url}: expected an error"),
        }
    }

    #[test]
    fn malformed_urls_name_the_bad_part() {
        assert!(reason("not a url").contains("relative URL without a base"));
        assert_eq!(
            reason("kafka://broker/topic"),
            "unknown scheme `kafka` (known: mem, dmq, ddmq, dsmq, shmq, duraqueue, amqp)"
        );
    }

    #[cfg(feature = "mem")]
    #[test]
    fn mem_urls_are_checked_part_by_part() {
        assert_eq!(reason("mem://"), "missing queue name: expected mem://NAME");
        assert_eq!(
            reason("mem://q?capacity=10&capacity=20"),
            "parameter `capacity` given twice"
        );
        assert_eq!(
            reason("mem://q/sub"),
            "unexpected path `/sub` after the queue name"
        );
        for url in ["mem://q:80", "mem://q:", "mem://u@q", "mem://[::1]"] {
            assert_eq!(
                reason(url),
                "a queue name takes no port, user or password",
                "{url}"
            );
        }
        assert_eq!(
            reason("mem://%FF"),
            "the queue name is not valid UTF-8 once percent-decoded"
        );
        assert_eq!(
            reason("mem://q?capacity=ten"),
            "parameter `capacity`: `ten` is not a valid usize: invalid digit found in string"
        );
        assert_eq!(
            reason("mem://q?max_priority=300"),
            "parameter `max_priority`: `300` is not a valid u8: number too large to fit in target type"
        );
        assert_eq!(
            reason("mem://q?capacity=5&colour=red"),
            "unknown parameter `colour`"
        );
    }

    #[cfg(feature = "mem")]
    #[test]
    fn mem_url_parameters_reach_the_queue() {
        let p = open_producer("mem://open-params?capacity=7&max_message_size=64&max_priority=3")
            .unwrap();
        let caps = p.capabilities();
        assert_eq!(
            (caps.capacity, caps.max_message_size, caps.max_priority),
            (Some(7), Some(64), Some(3))
        );
        // Omitted limits take the existing queue's; a given one must match it.
        let same = open_consumer("mem://open-params").unwrap();
        assert_eq!(same.capabilities(), caps);
        let err = open_consumer("mem://open-params?capacity=8&max_priority=3")
            .err()
            .expect("capacity differs");
        assert_eq!(
            err.to_string(),
            "mem backend: queue open-params already exists with capacity 7, not 8"
        );
        crate::mem::MemQueue::open(
            "open-params",
            &crate::mem::MemConfig::default()
                .capacity(7)
                .max_message_size(64)
                .max_priority(3),
        )
        .unwrap()
        .delete();
    }

    #[cfg(feature = "mem")]
    #[test]
    fn encoded_names_reach_the_queue_of_the_decoded_name() {
        let queue =
            crate::mem::MemQueue::open("my q café", &crate::mem::MemConfig::default()).unwrap();
        open_producer("mem://my%20q%20caf%C3%A9")
            .unwrap()
            .send(b"x")
            .unwrap();
        assert_eq!(queue.ready(), 1);
        queue.delete();
    }

    #[cfg(feature = "duraqueue")]
    #[test]
    fn duraqueue_urls_are_checked_part_by_part() {
        assert_eq!(
            reason("duraqueue:///tmp/q"),
            "missing parameter `size` (the ring size, e.g. size=8MiB)"
        );
        assert_eq!(
            reason("duraqueue:///tmp/q?size=8 parsecs"),
            "parameter `size`: unknown size unit `parsecs` in `8 parsecs` (use K, M or G)"
        );
        assert_eq!(
            reason("duraqueue:///tmp/q?size=8M&format=v3"),
            "parameter `format`: `v3` is not one of v1, v2"
        );
        assert_eq!(
            reason("duraqueue://host/tmp/q?size=8M"),
            "unexpected host `host`: a local file is duraqueue:///absolute/path"
        );
        assert_eq!(
            reason("duraqueue:///?size=8M"),
            "missing file path: expected duraqueue:///absolute/path"
        );
        // A bad ring size reaches the crate, whose error names it.
        let dir = std::env::temp_dir().join(format!("mq-facade-open-{}", std::process::id()));
        let url = format!("duraqueue://{}/q?size=100", dir.display());
        std::fs::create_dir_all(&dir).unwrap();
        let err = open_producer(&url).err().expect("100 is not a ring size");
        assert!(err.to_string().contains("invalid ring size 100"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(feature = "dmq")]
    #[test]
    fn dmq_urls_are_checked_part_by_part() {
        assert_eq!(
            reason("dmq:///tmp/q?framing=lines"),
            "parameter `framing`: `lines` is not one of newlines, newline, nulls, nul, frames, checked, raw"
        );
        assert_eq!(
            reason("dmq:///tmp/q?durability=disk"),
            "parameter `durability`: `disk` is not one of pagecache, data, full"
        );
        assert_eq!(
            reason("dmq://host/tmp/q"),
            "unexpected host `host`: a local file is dmq:///absolute/path"
        );
        assert_eq!(reason("dmq:///tmp/q?size=1"), "unknown parameter `size`");
        assert_eq!(
            reason("dmq:///"),
            "missing file path: expected dmq:///absolute/path"
        );
        // The parameters reach the queue: its framing sets the size limit, and the files
        // are BASE0, BASE1, BASEmap.
        let dir = std::env::temp_dir().join(format!("mq-facade-open-dmq-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("dmq://{}/q?framing=frames&durability=data", dir.display());
        let producer = open_producer(&url).unwrap();
        assert_eq!(producer.capabilities().max_message_size, Some(65_533));
        for f in ["q0", "q1", "qmap"] {
            assert!(dir.join(f).is_file(), "{f}");
        }
        drop(producer);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(feature = "ddmq")]
    #[test]
    fn ddmq_urls_are_checked_part_by_part() {
        assert_eq!(
            reason("ddmq:///tmp/q?durability=always"),
            "parameter `durability`: `always` is not one of none, fsync"
        );
        assert_eq!(
            reason("ddmq:///tmp/q?order=random"),
            "parameter `order`: `random` is not one of numeric, lexicographic"
        );
        assert_eq!(
            reason("ddmq:///tmp/a.b"),
            "queue name `a.b`: expected ddmq:///ROOT/QUEUE with QUEUE of letters, digits, `_` and `-`"
        );
        assert_eq!(
            reason("ddmq:///q"),
            "missing root directory: expected ddmq:///ROOT/QUEUE"
        );
        assert_eq!(
            reason("ddmq://host/tmp/q"),
            "unexpected host `host`: a local file is ddmq:///absolute/path"
        );
        assert_eq!(
            reason("ddmq:///tmp/q?colour=red"),
            "unknown parameter `colour`"
        );
        // A good URL creates the root and the queue.
        let dir = tempfile::tempdir().unwrap();
        let url = format!("ddmq://{}/root/jobs?durability=fsync", dir.path().display());
        let mut tx = open_producer(&url).unwrap();
        assert_eq!(tx.capabilities().durability, crate::Durability::Synced);
        tx.send(b"x").unwrap();
        assert!(dir.path().join("root/jobs/work").is_dir());
        let mut rx = open_consumer(&url).unwrap();
        assert_eq!(rx.try_recv().unwrap().unwrap().payload, b"x");
    }

    #[cfg(feature = "dsmq")]
    #[test]
    fn dsmq_urls_are_checked_part_by_part() {
        assert_eq!(
            reason("dsmq:///t"),
            "missing host: expected dsmq://HOST:PORT/TOPIC"
        );
        assert_eq!(
            reason("dsmq://127.0.0.1:30008"),
            "missing topic: expected dsmq://HOST:PORT/TOPIC (dsmq://HOST:PORT/ is the empty topic)"
        );
        assert_eq!(
            reason("dsmq://u:p@127.0.0.1:30008/t"),
            "dsmq has no users or passwords"
        );
        assert_eq!(
            reason("dsmq://127.0.0.1/t?encoding=hex"),
            "parameter `encoding`: `hex` is not one of text, base64"
        );
        assert_eq!(
            reason("dsmq://127.0.0.1/t?colour=red"),
            "unknown parameter `colour`"
        );
        assert_eq!(
            reason("dsmq://127.0.0.1/%FF"),
            "the topic is not valid UTF-8 once percent-decoded"
        );
        assert_eq!(reason("dsmq://127.0.0.1/t#x"), "unexpected fragment `#...`");
        // A well-formed URL reaches the network: nothing listens on port 1.
        let err = open_consumer("dsmq://127.0.0.1:1/t")
            .err()
            .expect("refused");
        assert!(
            err.to_string()
                .contains("cannot connect to ws://127.0.0.1:1/"),
            "{err}"
        );
    }

    #[cfg(feature = "shmq")]
    #[test]
    fn shmq_urls_are_checked_part_by_part() {
        let reason = |url: &str| match open_producer(url) {
            Err(Error::InvalidUrl { reason, .. }) => reason,
            other => panic!("{url}: expected InvalidUrl, got {:?}", other.map(|_| ())),
        };
        assert!(reason("shmq://0x0?words=2&slots=1").contains("key `0x0`"));
        assert!(reason("shmq://orders").contains("key `orders`"));
        assert!(reason("shmq://0x5151?words=2").contains("go together"));
        assert!(reason("shmq://0x5151?words=1&slots=4").contains("at least 2"));
        assert!(reason("shmq://0x5151?words=2&slots=0").contains("at least 1"));
        assert!(
            reason("shmq://0x5151?words=2&slots=2&mode=ring")
                .contains("not one of blocking, cyclic")
        );
        assert!(reason("shmq://0x5151?words=2&slots=2&format=c").contains("not one of native, go"));
        assert!(reason("shmq://0x5151:80").contains("no port"));
        assert!(reason("shmq://0x5151?colour=red").contains("colour"));
    }

    #[cfg(feature = "shmq")]
    #[test]
    fn shmq_url_creates_then_opens_the_same_segment() {
        let key = shmq::find_free_key().unwrap();
        let url = format!("shmq://{key}?words=4&slots=2&mode=cyclic");
        let mut tx = open_producer(&url).unwrap();
        let mut rx = open_consumer(&format!("shmq://{}", key.0)).unwrap();
        for m in [&b"a"[..], b"bb", b"ccc"] {
            tx.send(m).unwrap();
        }
        let result = (rx.recv().map(|m| m.payload), rx.recv().map(|m| m.payload));
        let wrong = open_producer(&format!("shmq://{key}?words=8&slots=2")).err();
        shmq::remove(key).unwrap();
        assert_eq!(result.0.unwrap(), b"bb");
        assert_eq!(result.1.unwrap(), b"ccc");
        let wrong = wrong.unwrap().to_string();
        assert!(wrong.contains("`words` 4, not 8"), "{wrong}");
    }

    #[cfg(feature = "shmq")]
    #[test]
    fn shmq_url_with_a_format_refuses_an_existing_queue_of_the_other() {
        let key = shmq::find_free_key().unwrap();
        let native = open_producer(&format!("shmq://{key}?words=2&slots=2"));
        let go = open_producer(&format!("shmq://{key}?words=2&slots=2&format=go")).err();
        let unsaid = open_consumer(&format!("shmq://{key}?words=2&slots=2")).err();
        shmq::remove(key).unwrap();
        native.unwrap();
        let go = go
            .expect("a native queue is not a Go-compatible one")
            .to_string();
        assert!(go.contains("`format` native, not go"), "{go}");
        assert!(unsaid.is_none(), "no format asked: any format is fine");
    }

    #[cfg(feature = "amqp")]
    #[test]
    fn amqp_urls_are_checked_part_by_part() {
        assert_eq!(
            reason("amqp://127.0.0.1:5672/%2f"),
            "missing parameter `queue` (the queue name: amqp://HOST:PORT/VHOST?queue=NAME)"
        );
        assert_eq!(
            reason("amqp:///%2f?queue=q"),
            "missing broker host: expected amqp://HOST:PORT/VHOST?queue=NAME"
        );
        assert_eq!(
            reason("amqp://h/a/b?queue=q"),
            "unexpected path `/a/b`: the path is the virtual host (write `/` inside it as %2f) and the queue is `?queue=NAME`"
        );
        assert_eq!(
            reason("amqp://h/?queue=amq.gen"),
            "parameter `queue`: `amq.gen` is not a queue name this adapter can declare (1 to 255 bytes, not starting with `amq.`)"
        );
        assert_eq!(
            reason("amqp://h/?queue=q&mode=lazy"),
            "parameter `mode`: `lazy` is not one of classic, quorum, stream"
        );
        assert_eq!(
            reason("amqp://h/?queue=q&mode=quorum&max_priority=5"),
            "parameter `max_priority`: RabbitMQ has priorities on classic queues only (mode=classic)"
        );
        assert_eq!(
            reason("amqp://h/?queue=q&max_priority=0"),
            "parameter `max_priority`: must be 1 to 255"
        );
        assert_eq!(
            reason("amqp://h/?queue=q&prefetch=0"),
            "parameter `prefetch`: must be at least 1 (0 would be unbounded)"
        );
        assert_eq!(
            reason("amqp://h/?queue=q&max_age=7D"),
            "parameter `max_age`: retention by age is for streams (mode=stream)"
        );
        assert_eq!(
            reason("amqp://h/?queue=q&mode=stream&max_age=7days"),
            "parameter `max_age`: `7days` is not a number followed by one of Y, M, D, h, m, s (e.g. 7D)"
        );
        assert_eq!(
            reason("amqp://h/?queue=q&offset=first"),
            "parameter `offset`: a start offset is for streams (mode=stream)"
        );
        assert_eq!(
            reason("amqp://h/?queue=q&mode=stream&offset=middle"),
            "parameter `offset`: `middle` is not one of next, first, last"
        );
        assert_eq!(
            reason("amqp://h/?queue=q&colour=red"),
            "unknown parameter `colour`"
        );
        assert_eq!(reason("amqp://h:99999/?queue=q"), "invalid port number");
    }

    #[cfg(not(feature = "mem"))]
    #[test]
    fn a_backend_compiled_out_names_its_feature() {
        let err = open_producer("mem://q").err().expect("mem is compiled out");
        assert_eq!(
            err.to_string(),
            "backend `mem` is not available in this build: enable the `mem` feature of mq-facade"
        );
    }
}
