//! A private, throw-away RabbitMQ node for tests and benches, on free loopback ports.
//!
//! [`Broker::shared`] starts one node per process (the first caller pays the ~8 s boot) and
//! installs the Debian package `rabbitmq-server` first when it is missing (as root, with
//! `apt-get`; otherwise it fails saying how to install it). The node has its own name,
//! cookie (`HOME`), data and log directories under a temporary directory, and its own
//! `epmd` on a private port, so it never meets a system node (5672, 25672, 4369).
//!
//! Cleanup does not rely on destructors (statics are never dropped): the node runs under
//! a small shell wrapper whose stdin is a pipe held by this process. When the process
//! exits, however it exits, the pipe closes and the wrapper stops the node (SIGTERM,
//! graceful), kills its `epmd` and deletes the directory.
//!
//! The same wrapper takes commands on that pipe: `kill` (SIGKILL the Erlang VM, the
//! harshest broker crash) and `start` (boot again on the same data directory and ports),
//! which is how [`Broker::crash_and_restart`] works.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where the Debian package puts the real scripts (the ones in /usr/sbin `su` to the
/// rabbitmq user).
const SERVER: &str = "/usr/lib/rabbitmq/bin/rabbitmq-server";
/// How long a node may take to open its AMQP port (about 8 s on 2 cores).
const BOOT_PATIENCE: Duration = Duration::from_secs(90);

/// The wrapper: boots the node in the background and obeys commands on stdin; at end of
/// input (the test process is gone) it stops everything and removes the directory.
const WRAPPER: &str = r#"
start() { "$MQ_RABBIT_SERVER" >>"$MQ_RABBIT_DIR/stdout.log" 2>&1 & pid=$!; }
start
while read -r cmd; do
  case "$cmd" in
    kill) if [ -s "$RABBITMQ_PID_FILE" ]; then kill -KILL "$(cat "$RABBITMQ_PID_FILE")"; fi
          kill -KILL "$pid" 2>/dev/null; wait "$pid"; rm -f "$RABBITMQ_PID_FILE"; echo killed ;;
    start) start; echo started ;;
  esac
done
kill -TERM "$pid" 2>/dev/null
wait "$pid"
epmd -port "$ERL_EPMD_PORT" -kill >/dev/null 2>&1
rm -rf "$MQ_RABBIT_DIR"
"#;

/// A running private node.
pub struct Broker {
    amqp_port: u16,
    epmd_port: u16,
    dir: PathBuf,
    node: String,
    control: Mutex<Control>,
}

struct Control {
    wrapper: Child,
    stdin: ChildStdin,
    replies: std::io::BufReader<std::process::ChildStdout>,
}

impl Broker {
    /// The node shared by every test of this process, started on first use.
    ///
    /// Panics with the reason (install failure, boot timeout with the node's log) when
    /// no node can be started: a test that needs a broker cannot run without one.
    pub fn shared() -> &'static Broker {
        static SHARED: OnceLock<Broker> = OnceLock::new();
        SHARED.get_or_init(|| Broker::start().unwrap_or_else(|e| panic!("{e}")))
    }

    /// Installs RabbitMQ if needed and boots a new private node.
    pub fn start() -> Result<Broker, String> {
        install()?;
        let dir = std::env::temp_dir().join(format!(
            "mq-rabbit-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["home", "log", "mnesia"] {
            std::fs::create_dir_all(dir.join(sub))
                .map_err(|e| format!("cannot create {}: {e}", dir.join(sub).display()))?;
        }
        let [amqp_port, dist_port, epmd_port] = free_ports()?;
        let config = format!(
            "listeners.tcp.1 = 127.0.0.1:{amqp_port}\nlog.console = false\nlog.file.level = info\ndisk_free_limit.absolute = 50MB\n"
        );
        std::fs::write(dir.join("rabbitmq.conf"), config)
            .and_then(|()| std::fs::write(dir.join("enabled_plugins"), "[].\n"))
            .map_err(|e| format!("cannot write the node's config in {}: {e}", dir.display()))?;
        let node = format!("mqtest{}x{amqp_port}@localhost", std::process::id());
        let d = |name: &str| dir.join(name);
        let mut wrapper = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .env("MQ_RABBIT_SERVER", SERVER)
            .env("MQ_RABBIT_DIR", &dir)
            .env("HOME", d("home"))
            .env("RABBITMQ_CONF_ENV_FILE", d("none.env"))
            .env("RABBITMQ_NODENAME", &node)
            .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_NODE_PORT", amqp_port.to_string())
            .env("RABBITMQ_DIST_PORT", dist_port.to_string())
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .env("ERL_EPMD_ADDRESS", "127.0.0.1")
            .env("RABBITMQ_CONFIG_FILE", d("rabbitmq.conf"))
            .env("RABBITMQ_ADVANCED_CONFIG_FILE", d("advanced.config"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", d("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", d("mnesia"))
            .env("RABBITMQ_LOG_BASE", d("log"))
            .env("RABBITMQ_PID_FILE", d("pid"))
            .env("RABBITMQ_PLUGINS_EXPAND_DIR", d("plugins-expand"))
            .env(
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS",
                "-kernel inet_dist_use_interface {127,0,0,1}",
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start sh for the RabbitMQ wrapper: {e}"))?;
        let stdin = wrapper.stdin.take().expect("piped stdin");
        let replies = std::io::BufReader::new(wrapper.stdout.take().expect("piped stdout"));
        let broker = Broker {
            amqp_port,
            epmd_port,
            dir,
            node,
            control: Mutex::new(Control {
                wrapper,
                stdin,
                replies,
            }),
        };
        broker.wait_ready()?;
        Ok(broker)
    }

    /// The AMQP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.amqp_port
    }

    /// The node name, e.g. `mqtest123x40001@localhost`.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f?queue=QUEUE` followed by `&extra` if given.
    pub fn url(&self, queue: &str, extra: &str) -> String {
        let mut url = format!(
            "amqp://guest:guest@127.0.0.1:{}/%2f?queue={queue}",
            self.amqp_port
        );
        if !extra.is_empty() {
            url.push('&');
            url.push_str(extra);
        }
        url
    }

    /// Runs `rabbitmqctl ARGS` against this node (about 2 s per call); its stdout, or
    /// the failure with its output.
    pub fn ctl(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .arg("-n")
            .arg(&self.node)
            .args(args)
            .env("HOME", self.dir.join("home"))
            .env("ERL_EPMD_PORT", self.epmd_port.to_string())
            .env("RABBITMQ_CONF_ENV_FILE", self.dir.join("none.env"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run rabbitmqctl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "rabbitmqctl {} failed ({}): {}{}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Kills the Erlang VM with SIGKILL (no clean shutdown: a crash or power cut of the
    /// broker, short of the OS losing its page cache) and boots it again on the same data
    /// directory and ports. Returns once the node accepts AMQP connections again.
    pub fn crash_and_restart(&self) -> Result<(), String> {
        self.command("kill", "killed")?;
        self.command("start", "started")?;
        self.wait_ready()
    }

    /// Kills the Erlang VM with SIGKILL and leaves it down; [`Broker::start_again`] boots it.
    pub fn crash(&self) -> Result<(), String> {
        self.command("kill", "killed")
    }

    /// Boots the node again after [`Broker::crash`], and waits until it is ready.
    pub fn start_again(&self) -> Result<(), String> {
        self.command("start", "started")?;
        self.wait_ready()
    }

    fn command(&self, cmd: &str, reply: &str) -> Result<(), String> {
        use std::io::BufRead;
        let mut control = self.control.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(control.stdin, "{cmd}")
            .and_then(|()| control.stdin.flush())
            .map_err(|e| format!("the RabbitMQ wrapper is gone ({cmd}): {e}"))?;
        let mut line = String::new();
        control
            .replies
            .read_line(&mut line)
            .map_err(|e| format!("the RabbitMQ wrapper did not answer {cmd}: {e}"))?;
        if line.trim() != reply {
            return Err(format!(
                "the RabbitMQ wrapper answered {line:?} to {cmd}, expected {reply:?}"
            ));
        }
        Ok(())
    }

    /// Polls until the listener answers an AMQP protocol header with a frame (it opens
    /// only once the boot is complete).
    fn wait_ready(&self) -> Result<(), String> {
        let started = Instant::now();
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.amqp_port));
        loop {
            if probe(addr) {
                return Ok(());
            }
            if let Ok(Some(status)) = self
                .control
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .wrapper
                .try_wait()
            {
                return Err(format!(
                    "the RabbitMQ wrapper exited ({status}) before the node was ready\n{}",
                    self.logs()
                ));
            }
            if started.elapsed() > BOOT_PATIENCE {
                return Err(format!(
                    "RabbitMQ node {} did not open 127.0.0.1:{} within {BOOT_PATIENCE:?}\n{}",
                    self.node,
                    self.amqp_port,
                    self.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The tail of the node's output and log files, for error messages.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        let mut files = vec![self.dir.join("stdout.log")];
        if let Ok(entries) = std::fs::read_dir(self.dir.join("log")) {
            files.extend(entries.flatten().map(|e| e.path()));
        }
        for file in files {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let tail: Vec<&str> = text.lines().rev().take(30).collect();
                out.push_str(&format!("--- {} (last lines)\n", file.display()));
                for line in tail.into_iter().rev() {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// The node's directory (data under `mnesia/`, logs under `log/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Whether 127.0.0.1:port answers `AMQP 0 0 9 1` with a method frame (type 1).
fn probe(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream.write_all(b"AMQP\x00\x00\x09\x01").is_err() {
        return false;
    }
    let mut first = [0u8; 1];
    matches!(stream.read(&mut first), Ok(1) if first[0] == 1)
}

/// Three distinct free loopback ports (AMQP, Erlang distribution, epmd).
fn free_ports() -> Result<[u16; 3], String> {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot find a free loopback port: {e}"))?;
    let port = |i: usize| listeners[i].local_addr().map(|a| a.port());
    let ports = [port(0), port(1), port(2)];
    match ports {
        [Ok(a), Ok(b), Ok(c)] => Ok([a, b, c]),
        _ => Err("cannot read a bound port".to_owned()),
    }
}

/// Installs the Debian package once per process when the server script is missing.
fn install() -> Result<(), String> {
    static INSTALLED: OnceLock<Result<(), String>> = OnceLock::new();
    INSTALLED.get_or_init(install_once).clone()
}

fn install_once() -> Result<(), String> {
    if Path::new(SERVER).exists() && which("epmd") {
        return Ok(());
    }
    let how = "install it with `apt-get update && apt-get install -y rabbitmq-server` \
               (Debian/Ubuntu, as root), or run the tests as root so they install it";
    if !which("apt-get") {
        return Err(format!(
            "{SERVER} is missing and there is no apt-get: {how}"
        ));
    }
    // Keep the package's postinst from starting a system node (it would take 5672 and
    // 4369): policy-rc.d exit 101 forbids service starts during the install.
    let policy = Path::new("/usr/sbin/policy-rc.d");
    let own_policy = !policy.exists();
    if own_policy {
        std::fs::write(policy, "#!/bin/sh\nexit 101\n")
            .and_then(|()| {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(policy, std::fs::Permissions::from_mode(0o755))
            })
            .map_err(|e| format!("{SERVER} is missing and cannot be installed ({e}): {how}"))?;
    }
    let run = |args: &[&str]| -> Result<(), String> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run {}: {e}; {how}", args.join(" ")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` failed ({}): {}\n{how}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    let result = run(&["apt-get", "update"]).and_then(|()| {
        run(&[
            "apt-get",
            "install",
            "-y",
            "-o",
            "DPkg::Lock::Timeout=600",
            "rabbitmq-server",
        ])
    });
    if own_policy {
        let _ = std::fs::remove_file(policy);
    }
    result?;
    if !Path::new(SERVER).exists() {
        return Err(format!(
            "rabbitmq-server was installed but {SERVER} is missing"
        ));
    }
    Ok(())
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}
