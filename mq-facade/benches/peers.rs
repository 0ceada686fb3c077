//! Peers of the durable queues, measured on this machine next to its floor: Redis streams.
//!
//! The bench installs the Debian package `redis-server` when `/usr/bin/redis-server` is
//! missing (as root, `apt-get update` first; the package may not start its system service)
//! and lists Redis under `skipped` with the reason only when that fails. It starts a private
//! `redis-server` on a free 127.0.0.1 port with its own temporary directory, `--save ""`
//! and `--appendonly yes`, first with `--appendfsync always`, then with `everysec`, and
//! stops it when done (killed on drop, also when the bench panics). Per mode, with one client
//! (the `redis` crate's synchronous connection):
//!
//! - `XADD` of a 64-byte field, one at a time: sends/s and the p50 latency;
//! - consuming the stream with `XRANGE … COUNT 100` from the start: messages/s.
//!
//! With `always` every `XADD` is written and fsync'd before Redis replies, so its rows
//! carry the machine's floor for that work, `pwrite` + `fdatasync` of 64 B on the same
//! file system, timed in the same loop (chunks of 20 `XADD`s and 20 floor writes in
//! turn). RabbitMQ with publisher confirms is the `amqp` bench's baseline and is not
//! repeated here.
//!
//! Environment:
//! - `PEERS_BENCH_QUICK=1`: about 2 s per mode (a smoke run) instead of 10 s.
//! - `PEERS_BENCH_REPORT=PATH`: write the `mq_benchkit::Report` (backend `peers`) there.
//!
//! Run with `cargo bench -p mq-facade --bench peers`.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mq_benchkit::{Better, Report, Row, Scenario};

#[path = "support/mod.rs"]
mod support;

use support::{FSYNC_FLOOR, FsyncFloor, PAYLOAD, median, percentile};

const REDIS_SERVER: &str = "/usr/bin/redis-server";
/// XADDs (and floor writes) per chunk of the interleaved loop.
const CHUNK: usize = 20;
/// Entries per `XRANGE` call when consuming.
const READ_BATCH: usize = 100;

fn main() {
    let quick = mq_benchkit::quick("PEERS_BENCH_QUICK");
    let per_mode = support::budget(quick, 2.0, 10.0);
    let mut report = Report::new(
        "peers",
        "Peers: Redis streams (XADD with appendfsync always and everysec)",
        quick,
    );
    report.command = format!(
        "{}cargo bench -p mq-facade --bench peers",
        if quick { "PEERS_BENCH_QUICK=1 " } else { "" }
    );
    report
        .setting("machine", support::machine())
        .setting("payload", "64 B (one stream field)")
        .setting("time per mode", format!("{per_mode:?}"));

    let mut scenario = Scenario::new("redis_streams", "Redis streams, one client, 64 B");
    match support::apt_install("redis-server", Path::new(REDIS_SERVER)) {
        Err(reason) => {
            println!("Redis skipped: {reason}");
            scenario.skipped.push(format!("Redis: {reason}"));
        }
        Ok(()) => {
            report.setting("redis", redis_version());
            let dir = tempfile::Builder::new()
                .prefix("mq-peers-bench")
                .tempdir()
                .expect("a temporary directory");
            report.setting("file system", support::file_system(dir.path()));
            for (mode, headline) in [("always", true), ("everysec", false)] {
                match measure(dir.path(), mode, per_mode) {
                    Ok(rows) => {
                        for row in rows {
                            scenario.rows.push(
                                if headline
                                    && row.unit == "msg/s"
                                    && row.measure.starts_with("XADD")
                                {
                                    row.headline()
                                } else {
                                    row
                                },
                            );
                        }
                    }
                    Err(reason) => {
                        println!("Redis ({mode}) skipped: {reason}");
                        scenario
                            .skipped
                            .push(format!("Redis, appendfsync {mode}: {reason}"));
                    }
                }
            }
            scenario.notes.push(format!(
                "private redis-server on 127.0.0.1, --appendonly yes, --save \"\"; XADD in chunks of {CHUNK} alternating with as many {FSYNC_FLOOR} on the same file system"
            ));
            scenario.notes.push(
                "everysec: Redis fsyncs the AOF once a second, so an XADD is not durable when it returns (up to a second is lost on power loss): no fsync floor applies".into(),
            );
        }
    }
    report.scenarios.push(scenario);
    support::print(&report);
    support::write_report(&report, "PEERS_BENCH_REPORT");
}

fn redis_version() -> String {
    Command::new(REDIS_SERVER)
        .arg("--version")
        .output()
        .ok()
        .map(|out| {
            // `Redis server v=7.0.15 sha=… malloc=…`: the version is what matters.
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.split_whitespace()
                .find_map(|word| word.strip_prefix("v="))
                .map_or_else(|| text.trim().to_owned(), str::to_owned)
        })
        .unwrap_or_else(|| "unknown".into())
}

/// A private redis-server; killed and reaped on drop.
struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(dir: &Path, fsync: &str) -> Result<Server, String> {
        let data = dir.join(format!("redis-{fsync}"));
        std::fs::create_dir_all(&data)
            .map_err(|e| format!("cannot create {}: {e}", data.display()))?;
        let port = support::free_port().map_err(|e| format!("no free loopback port: {e}"))?;
        let child = Command::new(REDIS_SERVER)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(&data)
            .args(["--appendonly", "yes", "--appendfsync", fsync, "--save", ""])
            .args(["--daemonize", "no", "--logfile"])
            .arg(data.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {REDIS_SERVER}: {e}"))?;
        let mut server = Server { child, port };
        let started = Instant::now();
        loop {
            if server.connect().is_ok() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                let log = std::fs::read_to_string(data.join("redis.log")).unwrap_or_default();
                return Err(format!("redis-server exited ({status}) at start: {log}"));
            }
            if started.elapsed() > Duration::from_secs(20) {
                return Err(format!(
                    "redis-server did not answer on 127.0.0.1:{port} within 20 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn connect(&self) -> redis::RedisResult<redis::Connection> {
        let mut con = redis::Client::open(format!("redis://127.0.0.1:{}/", self.port))?
            .get_connection_with_timeout(Duration::from_secs(1))?;
        redis::cmd("PING").query::<String>(&mut con)?;
        Ok(con)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Measures one `appendfsync` mode: XADD sends/s and p50, then XRANGE consumption.
fn measure(dir: &Path, fsync: &str, budget: Duration) -> Result<Vec<Row>, String> {
    let server = Server::start(dir, fsync)?;
    let mut con = server
        .connect()
        .map_err(|e| format!("cannot connect to redis-server: {e}"))?;
    let failed = |what: &str, e: redis::RedisError| format!("{what} failed: {e}");
    let floor = (fsync == "always")
        .then(|| FsyncFloor::new(dir))
        .transpose()
        .map_err(|e| format!("cannot create the floor's file in {}: {e}", dir.display()))?;
    let stream = "bench";
    let xadd = |con: &mut redis::Connection| -> Result<Duration, String> {
        let t = Instant::now();
        redis::cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("p")
            .arg(&PAYLOAD[..])
            .query::<String>(con)
            .map_err(|e| failed("XADD", e))?;
        Ok(t.elapsed())
    };
    // Warm-up: the stream's first node and the AOF's first blocks.
    for _ in 0..CHUNK {
        xadd(&mut con)?;
    }
    let (mut sends, mut floors) = (Vec::new(), Vec::new());
    let (mut send_time, mut floor_time) = (Duration::ZERO, Duration::ZERO);
    let started = Instant::now();
    while sends.len() < 5 * CHUNK || started.elapsed() < budget {
        for _ in 0..CHUNK {
            let took = xadd(&mut con)?;
            send_time += took;
            sends.push(took.as_secs_f64() * 1e6);
        }
        if let Some(floor) = &floor {
            for _ in 0..CHUNK {
                let took = floor
                    .once()
                    .map_err(|e| format!("{FSYNC_FLOOR} failed: {e}"))?;
                floor_time += took;
                floors.push(took.as_secs_f64() * 1e6);
            }
        }
    }
    let written = CHUNK + sends.len();

    // Consume everything from the start, READ_BATCH entries a call.
    let t = Instant::now();
    let (mut read, mut from) = (0usize, "-".to_owned());
    loop {
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(stream)
            .arg(&from)
            .arg("+")
            .arg("COUNT")
            .arg(READ_BATCH)
            .query(&mut con)
            .map_err(|e| failed("XRANGE", e))?;
        let entries = match reply {
            redis::Value::Array(entries) => entries,
            other => return Err(format!("XRANGE answered {other:?}, not an array")),
        };
        let Some(last) = entries.last() else { break };
        let id = match last {
            redis::Value::Array(entry) => match entry.first() {
                Some(redis::Value::BulkString(id)) => String::from_utf8_lossy(id).into_owned(),
                other => return Err(format!("XRANGE entry without an id: {other:?}")),
            },
            other => return Err(format!("XRANGE entry is not an array: {other:?}")),
        };
        read += entries.len();
        from = format!("({id}");
    }
    let consume_rate = read as f64 / t.elapsed().as_secs_f64();
    if read != written {
        return Err(format!(
            "XRANGE read {read} entries of the {written} written"
        ));
    }
    drop(server);

    let send_rate = sends.len() as f64 / send_time.as_secs_f64();
    let p50 = median(&sends);
    let p99 = percentile(&sends, 0.99);
    let mut rows = vec![
        Row::new(
            &format!("XADD 64 B, 1 client, appendfsync {fsync}"),
            send_rate,
            "msg/s",
            Better::Higher,
        ),
        Row::new(
            &format!("XADD p50 latency, appendfsync {fsync}"),
            p50,
            "µs",
            Better::Lower,
        ),
        Row::new(
            &format!("XADD p99 latency, appendfsync {fsync}"),
            p99,
            "µs",
            Better::Lower,
        ),
    ];
    if floor.is_some() {
        let floor_rate = floors.len() as f64 / floor_time.as_secs_f64();
        rows[0] = rows[0].clone().floor(FSYNC_FLOOR, floor_rate);
        rows[1] = rows[1].clone().floor(FSYNC_FLOOR, median(&floors));
        rows[2] = rows[2]
            .clone()
            .floor(FSYNC_FLOOR, percentile(&floors, 0.99));
    }
    rows.push(Row::new(
        &format!("consume: XRANGE COUNT {READ_BATCH} from the start, appendfsync {fsync}"),
        consume_rate,
        "msg/s",
        Better::Higher,
    ));
    Ok(rows)
}
