//! Opening a queue by URL: the scheme picks the backend, the rest its queue and options.

use std::collections::BTreeMap;
use std::str::FromStr;

use url::Url;

use crate::{Consumer, Error, Producer, Result};

/// Every scheme the facade knows, with the feature that compiles its adapter in
/// (`None`: no adapter exists yet, whatever the features).
const SCHEMES: &[(&str, Option<&str>)] = &[
    ("mem", Some("mem")),
    ("dmq", None),
    ("ddmq", None),
    ("dsmq", Some("dsmq")),
    ("shmq", None),
    ("duraqueue", Some("duraqueue")),
    ("amqp", None),
];

/// Opens the sending side of the queue at `url`.
///
/// | URL | backend |
/// |---|---|
/// | `mem://NAME?capacity=N&max_message_size=BYTES&max_priority=P` | [`mem`](crate::mem) (feature `mem`, default) |
/// | `duraqueue:///PATH?size=8MiB&format=v1\|v2&sync=msync\|fdatasync` | `duraqueue` (feature `duraqueue`) |
/// | `dsmq://HOST:PORT/TOPIC?encoding=text\|base64&max_message_bytes=N` | `dsmq` (feature `dsmq`): a topic of a dsmq server, broadcast |
/// | `dmq://`, `ddmq://`, `shmq://`, `amqp://` | not available yet: [`Error::BackendUnavailable`] |
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
        #[cfg(feature = "dsmq")]
        Target::Dsmq(target) => crate::adapter::dsmq::producer(&target),
    }
}

/// Opens the receiving side of the queue at `url`; see [`open_producer`] for the URLs.
pub fn open_consumer(url: &str) -> Result<Box<dyn Consumer>> {
    match Target::parse(url)? {
        #[cfg(feature = "mem")]
        Target::Mem(queue) => Ok(Box::new(queue.consumer())),
        #[cfg(feature = "duraqueue")]
        Target::Duraqueue(target) => crate::adapter::duraqueue::consumer(&target),
        #[cfg(feature = "dsmq")]
        Target::Dsmq(target) => crate::adapter::dsmq::consumer(&target),
    }
}

/// A parsed URL, ready to open.
enum Target {
    #[cfg(feature = "mem")]
    Mem(crate::mem::MemQueue),
    #[cfg(feature = "duraqueue")]
    Duraqueue(crate::adapter::duraqueue::Target),
    #[cfg(feature = "dsmq")]
    Dsmq(crate::adapter::dsmq::Target),
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
            #[cfg(feature = "dsmq")]
            "dsmq" => crate::adapter::dsmq::parse(raw, &url).map(Target::Dsmq),
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
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// The queue name of `scheme://NAME`: a host and nothing else (no path, user or port).
#[cfg_attr(not(feature = "mem"), allow(dead_code))]
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
#[cfg_attr(not(feature = "duraqueue"), allow(dead_code))]
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
    #[cfg_attr(not(feature = "duraqueue"), allow(dead_code))]
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

    fn reason(url: &str) -> String {
        match open_producer(url) {
            Err(Error::InvalidUrl { url: u, reason }) => {
                assert_eq!(u, url);
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

    #[test]
    fn backends_without_an_adapter_say_so() {
        for url in ["dmq:///tmp/q", "ddmq:///tmp/q", "shmq://0x5151"] {
            let err = open_consumer(url).err().expect("no adapter yet");
            assert!(
                matches!(&err, Error::BackendUnavailable { hint, .. } if hint.contains("not implemented yet")),
                "{url}: {err}"
            );
        }
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
