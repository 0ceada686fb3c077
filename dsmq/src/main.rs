//! The `dsmq` command: run a server, or put and get messages from the shell.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use dsmq::{ServerConfig, ShutdownPolicy};

/// dsmq: the dead simple message queue. A server keeps messages by topic for 600 s;
/// clients put messages into topics and get them back, each reader seeing every message put
/// after it connected, oldest first. Wire-compatible with the Python package dsmq.
#[derive(Debug, Parser)]
#[command(version, name = "dsmq")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a server until Ctrl-C or SIGTERM (logs go to stderr; RUST_LOG=debug for more).
    Serve(ServeArgs),
    /// Put one message into a topic. Puts are not acknowledged by the protocol.
    Put {
        #[command(flatten)]
        at: Address,
        /// The topic (any text; created when first used).
        topic: String,
        /// The message; `-` reads it from standard input.
        message: String,
    },
    /// Get the next message of a topic and print it.
    ///
    /// A connection only sees messages put after it connected, so a plain `dsmq get` almost
    /// always prints nothing: use --wait to wait for the next message, or --follow.
    /// Exit code 0: a message was printed; 1: nothing arrived; 2: usage or connection error.
    Get(GetArgs),
    /// Print every message put into a topic from now on, one per line (same as
    /// `get --follow`). Stops on Ctrl-C.
    Tail {
        #[command(flatten)]
        at: Address,
        /// The topic.
        topic: String,
    },
    /// Ask the server to stop (it accepts this from loopback clients by default).
    Shutdown {
        #[command(flatten)]
        at: Address,
    },
}

#[derive(Debug, Args)]
struct Address {
    /// The server's host.
    #[arg(long, default_value = dsmq::client::DEFAULT_HOST)]
    host: String,
    /// The server's port.
    #[arg(long, default_value_t = dsmq::client::DEFAULT_PORT)]
    port: u16,
    /// Give up connecting after this many seconds (a server that does not answer).
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = positive_secs)]
    connect_timeout: Duration,
}

/// A number of seconds (decimals allowed), at least 0.
fn secs(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("`{text}` is not a number of seconds (0 or more)"))
}

/// A number of seconds, more than 0.
fn positive_secs(text: &str) -> Result<Duration, String> {
    match secs(text)? {
        d if d.is_zero() => Err(format!("`{text}`: must be more than 0 seconds")),
        d => Ok(d),
    }
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// The address to listen on (0.0.0.0 to accept other machines: there is no
    /// authentication; put a TLS proxy in front if the network is not trusted).
    #[arg(long, default_value = dsmq::client::DEFAULT_HOST)]
    host: String,
    /// The port to listen on (0 picks a free one; the log says which).
    #[arg(long, default_value_t = dsmq::client::DEFAULT_PORT)]
    port: u16,
    /// Seconds a message is kept after it was put.
    #[arg(long, default_value_t = 600)]
    ttl_secs: u64,
    /// Most bytes kept (message text, topic twice and 64 per message); the oldest messages
    /// are evicted beyond it.
    #[arg(long, default_value_t = 256 << 20)]
    max_stored_bytes: usize,
    /// Largest request accepted (the whole JSON frame), in bytes; larger ones close the
    /// connection with code 1009.
    #[arg(long, default_value_t = 1 << 20, value_parser = at_least_one)]
    max_message_bytes: usize,
    /// Most open connections; more are refused with HTTP 503.
    #[arg(long, default_value_t = 1024, value_parser = at_least_one)]
    max_connections: usize,
    /// Who may stop the server with the protocol's `shutdown` action.
    #[arg(long, value_enum, default_value_t = Policy::Loopback)]
    allow_shutdown: Policy,
}

/// A count that makes no sense as 0 (a server that refuses every request or connection).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(format!("`{text}`: {e}")),
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Policy {
    /// Clients on this machine only.
    Loopback,
    /// Any client (as Python dsmq 1.4).
    Anyone,
    /// No client.
    Never,
}

#[derive(Debug, Args)]
struct GetArgs {
    #[command(flatten)]
    at: Address,
    /// The topic.
    topic: String,
    /// Wait up to this many seconds for a message (decimals allowed).
    #[arg(long, value_name = "SECS", value_parser = secs)]
    wait: Option<Duration>,
    /// Print the newest message instead of the oldest (skipping the others).
    #[arg(long)]
    latest: bool,
    /// Keep printing messages, one per line, until interrupted.
    #[arg(long, conflicts_with = "wait")]
    follow: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dsmq: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> dsmq::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => serve(args).map(|()| ExitCode::SUCCESS),
        Command::Put { at, topic, message } => {
            let message = if message == "-" {
                let mut text = String::new();
                std::io::stdin().read_to_string(&mut text)?;
                text
            } else {
                message
            };
            let mut client = connect(&at)?;
            client.put(&topic, &message)?;
            client.close()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get(args) => get(args),
        Command::Tail { at, topic } => get(GetArgs {
            at,
            topic,
            wait: None,
            latest: false,
            follow: true,
        }),
        Command::Shutdown { at } => {
            connect(&at)?.shutdown_server()?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn connect(at: &Address) -> dsmq::Result<dsmq::blocking::Client> {
    dsmq::blocking::Client::connect_timeout(&at.host, at.port, at.connect_timeout)
}

fn get(args: GetArgs) -> dsmq::Result<ExitCode> {
    let mut client = connect(&args.at)?;
    let next = |client: &mut dsmq::blocking::Client| {
        if args.latest {
            client.get_latest(&args.topic)
        } else {
            client.get(&args.topic)
        }
    };
    let stdout = std::io::stdout();
    if args.follow {
        let mut pause = Duration::from_millis(1);
        loop {
            match next(&mut client)? {
                Some(m) => {
                    let mut out = stdout.lock();
                    writeln!(out, "{m}")?;
                    out.flush()?;
                    pause = Duration::from_millis(1);
                }
                None => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
            }
        }
    }
    let deadline = Instant::now() + args.wait.unwrap_or_default();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(m) = next(&mut client)? {
            writeln!(stdout.lock(), "{m}")?;
            return Ok(ExitCode::SUCCESS);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(ExitCode::from(1));
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(32));
    }
}

fn serve(args: ServeArgs) -> dsmq::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    #[cfg(unix)]
    raise_open_files(args.max_connections);
    let config = ServerConfig {
        ttl: Duration::from_secs(args.ttl_secs),
        max_stored_bytes: args.max_stored_bytes,
        max_message_bytes: args.max_message_bytes,
        max_connections: args.max_connections,
        allow_shutdown: match args.allow_shutdown {
            Policy::Loopback => ShutdownPolicy::LoopbackOnly,
            Policy::Anyone => ShutdownPolicy::Anyone,
            Policy::Never => ShutdownPolicy::Never,
        },
        ..ServerConfig::default()
    };
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let server = dsmq::Server::bind((args.host.as_str(), args.port), config).await?;
        dsmq::stop_on_signals(server.handle());
        server.run().await
    })
}

/// Lifts the soft limit of open files to the hard one: every connection is a file
/// descriptor, and the usual soft limit (1024) is below the default `--max-connections` plus
/// the server's own files and the connections still in their HTTP handshake. Out of
/// descriptors, the server cannot accept anybody (it waits until some close).
#[cfg(unix)]
fn raise_open_files(max_connections: usize) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    // The kernel refuses more than fs.nr_open, by default 2^20.
    const CAP: u64 = 1 << 20;
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return;
    };
    let mut limit = soft;
    let target = hard.min(CAP);
    if soft < target {
        match setrlimit(Resource::RLIMIT_NOFILE, target, hard) {
            Ok(()) => limit = target,
            Err(e) => tracing::warn!("cannot raise the open-file limit from {soft}: {e}"),
        }
    }
    let want = max_connections as u64 + 64;
    if limit < want {
        tracing::warn!(
            "the open-file limit is {limit} (ulimit -n), below the {want} that \
             --max-connections {max_connections} needs: beyond it connections wait"
        );
    }
}
