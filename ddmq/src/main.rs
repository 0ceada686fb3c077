//! `ddmq`: the command-line tool of Python ddmq 0.9.14, with the same commands, options,
//! output and exit codes (see the crate README for the few intended differences).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use ddmq::format::{self, python_float_repr, python_json};
use ddmq::{AckOutcome, Broker, Message, PublishOptions, Requeue};
use serde_json::Value;

const COMMANDS: &str = "The available commands are:
view      List queues and number of messages
create    Create a queue
delete    Delete a queue
publish   Publish message to queue
consume   Consume message from queue
ack       Positivly acknowledge a message
nack      Negativly acknowledge a message (possibly requeue)
del_msg   Delete the specified message
purge     Purge all messages from queue
clean     Clean out expired messages from queue
json      Run a command packaged as a JSON object

For more info about the commands, run
ddmq <command> -h";

#[derive(Parser, Debug)]
#[command(
    name = "ddmq",
    about = "Command-line interface to Dead Drop Messaging Queue (ddmq): a serverless queue \
             where every queue is a directory and every message a JSON file, shared with \
             Python ddmq 0.9.14 clients.",
    override_usage = "ddmq <command> [<args>]",
    after_help = COMMANDS,
    disable_version_flag = true,
    allow_external_subcommands = true
)]
struct Cli {
    /// print version
    #[arg(short = 'v', long = "version")]
    version: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List queues and number of messages
    View(ViewArgs),
    /// Create queue(s)
    Create(QueuesArgs),
    /// Delete queue(s)
    Delete(QueuesArgs),
    /// Publish a message to a queue
    Publish(PublishArgs),
    /// Consume message(s) from a queue (claims them into work/ until acked, nacked or expired)
    Consume(ConsumeArgs),
    /// Positively acknowledge claimed message(s): delete them (or requeue with -r)
    Ack(AckArgs),
    /// Negatively acknowledge claimed message(s): requeue flagged ones (all with -r), delete the rest
    Nack(AckArgs),
    /// Delete the specified message file(s)
    #[command(name = "del_msg")]
    DelMsg(DelArgs),
    /// Purge all messages (waiting and claimed) from queue(s)
    Purge(QueuesArgs),
    /// Requeue or delete expired claimed messages of queue(s) now
    Clean(QueuesArgs),
    /// Run a command packaged as a JSON object, e.g. '{"command": "view", "root": "/tmp/q"}'
    Json {
        /// the JSON object, within single quotes
        json_payload: String,
    },
    #[command(external_subcommand)]
    Unknown(Vec<String>),
}

/// Options every command shares.
#[derive(Args, Debug, Clone, Default)]
struct Common {
    /// verbose mode
    #[arg(short = 'v')]
    verbose: bool,
    /// debug mode
    #[arg(short = 'd')]
    debug: bool,
}

#[derive(Args, Debug, Clone, Default)]
struct ViewArgs {
    /// the message queue's root folder
    root: PathBuf,
    /// comma-separated names of specific queue(s) to view
    queue: Option<String>,
    /// create the root folder if needed
    #[arg(short = 'f')]
    force: bool,
    /// only print the name of queues (faster)
    #[arg(short = 'n')]
    names: bool,
    /// output format: plain, json, yaml (default: plain)
    #[arg(long, default_value = "default")]
    format: String,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug, Clone, Default)]
struct QueuesArgs {
    /// the message queue's root folder
    root: PathBuf,
    /// comma-separated names of the queue(s)
    queue: String,
    /// create and initiate the root folder if needed
    #[arg(short = 'f')]
    force: bool,
    /// silent mode
    #[arg(short = 's')]
    silent: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug, Clone, Default)]
struct PublishArgs {
    /// the message queue's root folder
    root: PathBuf,
    /// name of queue to publish to
    queue: String,
    /// message text within quotes
    message: String,
    /// create the root folder and queue if needed
    #[arg(short = 'f')]
    force: bool,
    /// priority of the message (lower number = higher priority; 0 is the top)
    #[arg(short = 'p', long, allow_negative_numbers = true)]
    priority: Option<i64>,
    /// ack timeout of the message in seconds (default: the queue's message_timeout)
    #[arg(short = 't', long)]
    timeout: Option<u64>,
    /// requeue the message when it is nacked or its ack timeout passes
    #[arg(short = 'r', long)]
    requeue: bool,
    /// times the message may be requeued before it is deleted (0: unlimited)
    #[arg(short = 'l', long = "requeue_limit")]
    requeue_limit: Option<u64>,
    /// priority of requeued copies; implies -r
    #[arg(long = "requeue_prio")]
    requeue_prio: Option<u64>,
    /// publish without cleaning the queue first
    #[arg(short = 'C', long = "skip_cleaning")]
    skip_cleaning: bool,
    /// silent mode
    #[arg(short = 's')]
    silent: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug, Clone, Default)]
struct ConsumeArgs {
    /// the message queue's root folder
    root: PathBuf,
    /// name of queue to consume from
    queue: String,
    /// create the root folder and queue if needed
    #[arg(short = 'f')]
    force: bool,
    /// the number of messages to consume
    #[arg(short = 'n')]
    n: Option<usize>,
    /// output format: plain, json, yaml
    #[arg(long, default_value = "json")]
    format: String,
    /// consume without cleaning the queue first
    #[arg(short = 'C', long = "skip-cleaning")]
    skip_cleaning: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug, Clone, Default)]
struct AckArgs {
    /// the message queue's root folder
    root: PathBuf,
    /// name of the queue the messages are in
    queue: String,
    /// comma-separated file names of the claimed messages (in the queue's work/)
    msg_files: String,
    /// skip cleaning the queue first
    #[arg(short = 'C', long = "skip-cleaning")]
    skip_cleaning: bool,
    /// force requeue of the messages
    #[arg(short = 'r', long)]
    requeue: bool,
    #[command(flatten)]
    common: Common,
}

#[derive(Args, Debug, Clone, Default)]
struct DelArgs {
    /// the message queue's root folder
    root: PathBuf,
    /// name of the queue the messages are in
    queue: String,
    /// comma-separated names or paths of the messages to delete
    msg_files: String,
    /// skip cleaning the queue first
    #[arg(short = 'C', long = "skip-cleaning")]
    skip_cleaning: bool,
    /// silent mode
    #[arg(short = 's')]
    silent: bool,
    #[command(flatten)]
    common: Common,
}

/// A fatal error: its text goes to stderr and the exit code is 1.
struct Fatal(String);

type Out = Result<(), Fatal>;

fn fatal(text: impl Into<String>) -> Fatal {
    Fatal(text.into())
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    if cli.version {
        println!("ddmq version 0.9.14");
        return ExitCode::SUCCESS;
    }
    let Some(command) = cli.command else {
        print_help();
        return ExitCode::from(1);
    };
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal(text)) => {
            if !text.is_empty() {
                eprintln!("{text}");
            }
            ExitCode::from(1)
        }
    }
}

fn print_help() {
    use clap::CommandFactory;
    let _ = Cli::command().print_help();
    println!();
}

fn run(command: Command) -> Out {
    match command {
        Command::View(a) => view(&a),
        Command::Create(a) => create(&a),
        Command::Delete(a) => delete(&a),
        Command::Publish(a) => publish(&a),
        Command::Consume(a) => consume(&a),
        Command::Ack(a) => settle(&a, true),
        Command::Nack(a) => settle(&a, false),
        Command::DelMsg(a) => del_msg(&a),
        Command::Purge(a) => purge(&a),
        Command::Clean(a) => clean(&a),
        Command::Json { json_payload } => json_command(&json_payload),
        Command::Unknown(args) => {
            println!(
                "Unrecognized command: {}",
                args.first().map_or("", |s| s.as_str())
            );
            print_help();
            Err(Fatal(String::new()))
        }
    }
}

fn open(root: &Path, create: bool) -> Result<Broker, Fatal> {
    Broker::open(root, create).map_err(|e| match e {
        ddmq::Error::RootMissing { .. } => fatal(format!(
            "The specified root directory ({}) does not exist. Please run the same command with the (-f) force flag to try to create and initiate directories as needed.",
            root.display()
        )),
        ddmq::Error::RootUninitiated { .. } => fatal(format!(
            "The specified root directory ({}) exists but is not initiated. Please run the same command with the (-f) force flag to try to create and initiate directories as needed.",
            root.display()
        )),
        other => fatal(format!(
            "Unable to write to the specified root directory ({}): {other}",
            root.display()
        )),
    })
}

fn err(e: ddmq::Error) -> Fatal {
    fatal(format!("Error: {e}"))
}

fn view(a: &ViewArgs) -> Out {
    if !matches!(a.format.as_str(), "plain" | "json" | "yaml" | "default") {
        return Err(fatal(format!(
            "Unknown format, {}. Valid formats are 'default', 'plain', 'json' and 'yaml'.",
            a.format
        )));
    }
    let broker = open(&a.root, a.force)?;
    let mut queues = broker.list_queues().map_err(err)?;
    if let Some(filter) = &a.queue {
        let all = queues;
        queues = Vec::new();
        for q in filter.split(',') {
            if all.iter().any(|x| x == q) {
                queues.push(q.to_owned());
            } else {
                println!("Warning: requested queue does not exist ({q})");
            }
        }
        queues.sort();
        queues.dedup();
    }
    if a.names {
        match a.format.as_str() {
            "json" => println!("{}", python_json(&Value::from(queues))),
            "yaml" if queues.is_empty() => println!("[]"),
            "yaml" => println!(
                "{}",
                queues
                    .iter()
                    .map(|q| format!("- {}", yaml_scalar(&Value::from(q.as_str()))))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            _ => println!("{}", queues.join("\n")),
        }
        return Ok(());
    }
    let only: Vec<&str> = queues.iter().map(String::as_str).collect();
    let views = broker.view(Some(&only)).map_err(err)?;
    match a.format.as_str() {
        "json" => {
            let mut map = serde_json::Map::new();
            for v in &views {
                map.insert(v.name.clone(), serde_json::json!([v.waiting, v.at_work]));
            }
            println!("{}", python_json(&Value::Object(map)));
        }
        "yaml" if views.is_empty() => println!("{{}}"),
        "yaml" => {
            let lines: Vec<String> = views
                .iter()
                .map(|v| {
                    format!(
                        "{}:\n- {}\n- {}",
                        yaml_scalar(&Value::from(v.name.as_str())),
                        v.waiting,
                        v.at_work
                    )
                })
                .collect();
            println!("{}", lines.join("\n"));
        }
        _ => {
            let mut rows: Vec<[String; 3]> = vec![[
                "*queue*".into(),
                "*msg in queue*".into(),
                "*msg at work*".into(),
            ]];
            rows.extend(
                views
                    .iter()
                    .map(|v| [v.name.clone(), v.waiting.to_string(), v.at_work.to_string()]),
            );
            let w: Vec<usize> = (0..3)
                .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
                .collect();
            let text: Vec<String> = rows
                .iter()
                .map(|r| {
                    format!(
                        "| {:<w0$} | {:<w1$} | {:<w2$} |",
                        r[0],
                        r[1],
                        r[2],
                        w0 = w[0],
                        w1 = w[1],
                        w2 = w[2]
                    )
                })
                .collect();
            println!("{}", text.join("\n"));
        }
    }
    Ok(())
}

fn create(a: &QueuesArgs) -> Out {
    let broker = open(&a.root, a.force)?;
    let existing = broker.list_queues().map_err(err)?;
    let mut created = 0;
    for q in a.queue.split(',') {
        if !format::valid_queue_name(q) {
            say(a.silent, format!("Skipping {q}, invalid name"));
        } else if existing.iter().any(|x| x == q) {
            say(a.silent, format!("Already existing: {q}"));
        } else {
            match broker.create_queue(q) {
                Ok(()) => {
                    say(a.silent, format!("Created new queue: {q}"));
                    created += 1;
                }
                Err(ddmq::Error::QueueExists { .. }) => {
                    say(a.silent, format!("Already existing: {q}"))
                }
                Err(e) => return Err(err(e)),
            }
        }
    }
    if created > 1 {
        say(a.silent, format!("Created {created} new queues"));
    }
    Ok(())
}

fn say(silent: bool, text: String) {
    if !silent {
        println!("{text}");
    }
}

/// Runs `f` on each valid existing queue of `a`, with the original's messages for the rest;
/// `done` names what `f` did (`Deleted`, …), for the line after more than one.
fn each_queue(
    a: &QueuesArgs,
    missing: &dyn Fn(&Broker, &str) -> String,
    done: &str,
    mut f: impl FnMut(&Broker, &str) -> Out,
) -> Out {
    let broker = open(&a.root, a.force)?;
    let existing = broker.list_queues().map_err(err)?;
    let mut n = 0;
    for q in a.queue.split(',') {
        if !format::valid_queue_name(q) {
            say(a.silent, format!("Skipping {q}, invalid name"));
        } else if !existing.iter().any(|x| x == q) {
            say(a.silent, missing(&broker, q));
        } else {
            f(&broker, q)?;
            n += 1;
        }
    }
    if n > 1 {
        say(a.silent, format!("{done} {n} queues"));
    }
    Ok(())
}

fn delete(a: &QueuesArgs) -> Out {
    each_queue(
        a,
        &|_, q| format!("Queue not existing: {q}"),
        "Deleted",
        |b, q| {
            b.delete_queue(q, false).map_err(err)?;
            say(a.silent, format!("Deleted queue: {q}"));
            Ok(())
        },
    )
}

fn missing_at(b: &Broker, q: &str) -> String {
    format!("Queue does not exist: {}", b.root().join(q).display())
}

fn purge(a: &QueuesArgs) -> Out {
    let tty = std::io::stderr().is_terminal() && !a.silent;
    each_queue(a, &missing_at, "Purged", |b, q| {
        let mut progress = |done: usize| {
            if tty {
                eprint!("\rpurging {q}: {done} files removed");
            }
        };
        let counts = b.purge_with(q, &mut progress).map_err(err)?;
        if tty && counts.waiting + counts.at_work >= 1000 {
            eprintln!();
        }
        say(
            a.silent,
            format!(
                "Purged queue: {q}\t({} messages in queue, {} messages in work)",
                counts.waiting, counts.at_work
            ),
        );
        Ok(())
    })
}

fn clean(a: &QueuesArgs) -> Out {
    let tty = std::io::stderr().is_terminal() && !a.silent;
    each_queue(a, &missing_at, "Cleaned", |b, q| {
        if tty {
            eprint!("\rcleaning {q} ...");
        }
        let mut progress = |seen: usize| {
            if tty {
                eprint!("\rcleaning {q}: {seen} claimed messages looked at");
            }
        };
        let report = b.clean_with(q, true, &mut progress).map_err(err)?;
        if tty {
            eprintln!(
                "\rcleaning {q}: {} requeued, {} deleted, {} not expired",
                report.requeued, report.deleted, report.skipped
            );
        }
        say(a.silent, format!("Cleaned queue: {q}"));
        Ok(())
    })
}

fn queue_missing(root: &Path, q: &str) -> Fatal {
    fatal(format!(
        "The specified queue ({}) does not exist. Please run the same command with the (-f) force flag to create and initiate directories as needed.",
        root.join(q).display()
    ))
}

fn publish(a: &PublishArgs) -> Out {
    let broker = open(&a.root, a.force)?;
    if !format::valid_queue_name(&a.queue) {
        return Err(fatal(format!("Error: invalid queue name ({})", a.queue)));
    }
    if !broker.list_queues().map_err(err)?.contains(&a.queue) {
        if !a.force {
            return Err(queue_missing(broker.root(), &a.queue));
        }
        broker.create_queue(&a.queue).map_err(|e| {
            fatal(format!(
                "Unable to write to the specified queue directory ({}): {e}",
                a.root.join(&a.queue).display()
            ))
        })?;
        say(a.silent, format!("Created new queue: {}", a.queue));
    }
    if a.skip_cleaning {
        say(a.silent, "Skipping queue cleaning.".into());
    }
    let mut o = PublishOptions::new().skip_cleaning(a.skip_cleaning);
    if let Some(p) = a.priority {
        if p < 0 {
            return Err(fatal(format!(
                "Warning, priority set to less than 0 (priority={p}). Negative numbers will be sorted in the wrong order when working with messages."
            )));
        }
        o = o.priority(p.unsigned_abs());
    }
    if let Some(t) = a.timeout.filter(|t| *t > 0) {
        o = o.timeout(t as f64);
    }
    o = o.requeue(match a.requeue_prio.filter(|p| *p > 0) {
        Some(p) => Requeue::AtPriority(p),
        None if a.requeue => Requeue::Yes,
        None => Requeue::No,
    });
    if let Some(l) = a.requeue_limit {
        o = o.requeue_limit(l);
    }
    let m = broker
        .publish(&a.queue, a.message.as_str(), &o)
        .map_err(|e| match e {
            // The original's words, then why (a full disk, a permission).
            e @ ddmq::Error::Io { .. } => fatal(format!(
                "Unable to write to the specified queue directory ({}): {e}",
                a.root.join(&a.queue).display()
            )),
            e => err(e),
        })?;
    say(
        a.silent,
        format!("Successfully published message:\n\n{}", plain(&m)),
    );
    Ok(())
}

fn consume(a: &ConsumeArgs) -> Out {
    if !matches!(a.format.as_str(), "plain" | "json" | "yaml") {
        return Err(fatal(format!(
            "Unknown format, {}. Valid formats are plain, json and yaml.",
            a.format
        )));
    }
    let broker = open(&a.root, a.force)?;
    let o = ddmq::ConsumeOptions::default().skip_cleaning(a.skip_cleaning);
    let unable = |why: String| {
        fatal(format!(
            "Unable to read/write to the specified queue directory ({}).{why}",
            a.root.join(&a.queue).display()
        ))
    };
    if !format::valid_queue_name(&a.queue) {
        return Err(unable(String::new()));
    }
    let got = broker
        .consume_with(&a.queue, a.n.unwrap_or(1).max(1), &o)
        .map_err(|e| match e {
            ddmq::Error::QueueMissing { .. } => unable(String::new()),
            // The original's words, then why (a permission, a full disk).
            e @ ddmq::Error::Io { .. } => unable(format!(" {e}")),
            e => err(e),
        })?;
    if got.is_empty() {
        println!("No more messages in {}", a.queue);
        return Ok(());
    }
    for d in got {
        let m = &d.message;
        match a.format.as_str() {
            // The message as the original prints it: its fields, not the file's integrity key.
            "json" => println!("{}", String::from_utf8_lossy(&m.encode_without_checksum())),
            "plain" => println!("{}", plain(m)),
            _ => println!("{}", yaml_message(m)),
        }
        // Stays claimed until acked (by name) or expired.
        std::mem::forget(d);
    }
    Ok(())
}

fn settle(a: &AckArgs, ack: bool) -> Out {
    let broker = open(&a.root, false)?;
    let names: Vec<&str> = a.msg_files.split(',').collect();
    let work = broker.root().join(&a.queue).join("work");
    let (done, failed) = if ack {
        ("acked", "failed ack")
    } else {
        ("nacked", "failed nack")
    };
    let mut ok = Vec::new();
    for name in &names {
        let path = work.join(name);
        if !path.is_file() {
            println!("Warning: message file missing, {}", path.display());
            continue;
        }
        let outcome = if ack {
            broker.ack_names(&a.queue, &[name], a.requeue)
        } else {
            // As the original's CLI: requeue=False without -r, so even a flagged message
            // is deleted.
            broker.nack_names(&a.queue, &[name], Some(a.requeue))
        };
        match outcome {
            Ok(o) if !matches!(o.first(), Some(AckOutcome::Missing) | None) => ok.push(*name),
            Ok(_) => {}
            Err(ddmq::Error::QueueMissing { .. }) => {
                return Err(queue_missing(broker.root(), &a.queue));
            }
            Err(e) => eprintln!("Error: {e}"),
        }
    }
    for name in &ok {
        println!("{done} {}", work.join(name).display());
    }
    for name in names.iter().filter(|n| !ok.contains(n)) {
        println!("{failed} {}", work.join(name).display());
    }
    Ok(())
}

fn del_msg(a: &DelArgs) -> Out {
    let broker = open(&a.root, false)?;
    let mut n = 0;
    for file in a.msg_files.split(',') {
        let base = Path::new(file)
            .file_name()
            .and_then(|b| b.to_str())
            .unwrap_or(file);
        let path = if format::ClaimedName::parse(base).is_ok()
            && !base.contains("..")
            && base.split('.').count() == 4
        {
            a.root.join(&a.queue).join("work").join(base)
        } else if format::WaitingName::parse(base).is_ok() {
            a.root.join(&a.queue).join(base)
        } else {
            PathBuf::from(file)
        };
        if !path.is_file() {
            say(
                a.silent,
                format!("Skipping {}, file does not exists", path.display()),
            );
            continue;
        }
        match broker.delete_message(&path) {
            Ok(true) => {
                say(a.silent, format!("Deleted {}", path.display()));
                n += 1;
            }
            Ok(false) => say(
                a.silent,
                format!("Skipping {}, file does not exists", path.display()),
            ),
            Err(e) => return Err(err(e)),
        }
    }
    if n > 1 {
        say(a.silent, format!("Deleted {n} messages"));
    }
    Ok(())
}

/// The `json` command: a whitelist dispatch on `command` (or `cmd`); nothing is evaluated.
fn json_command(payload: &str) -> Out {
    let example = r#"{"cmd": null, "root": null, "queue": null, "message": null, "f": false, "v": false, "d": false, "n": false, "format": "plain", "s": false, "priority": null, "timeout": null, "requeue": false, "requeue_prio": null, "skip_cleaning": false}"#;
    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(payload) else {
        return Err(fatal(format!(
            "Error: unable to load the JSON object (wrong format or missing single quotes?)\n\nExample of structure and all the options that can be set:\n\n'{example}'"
        )));
    };
    let s = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    let b = |k: &str| o.get(k).is_some_and(format::truthy);
    let u = |k: &str| o.get(k).and_then(Value::as_u64);
    let command = s("command").or_else(|| s("cmd")).unwrap_or_default();
    let root =
        PathBuf::from(s("root").ok_or_else(|| fatal("Error: the JSON object has no \"root\""))?);
    let queue = s("queue").unwrap_or_default();
    let need_queue = || {
        if queue.is_empty() {
            Err(fatal("Error: the JSON object has no \"queue\""))
        } else {
            Ok(queue.clone())
        }
    };
    let common = Common {
        verbose: b("v"),
        debug: b("d"),
    };
    let format_or = |d: &str| s("format").unwrap_or_else(|| d.to_owned());
    let files = || s("msg_files").or_else(|| s("message")).unwrap_or_default();
    let queues = || -> Result<QueuesArgs, Fatal> {
        Ok(QueuesArgs {
            root: root.clone(),
            queue: need_queue()?,
            force: b("f"),
            silent: b("s"),
            common: common.clone(),
        })
    };
    let command = match command.as_str() {
        "view" => Command::View(ViewArgs {
            root: root.clone(),
            queue: Some(queue.clone()).filter(|q| !q.is_empty()),
            force: b("f"),
            names: b("n"),
            format: format_or("default"),
            common,
        }),
        "create" => Command::Create(queues()?),
        "delete" => Command::Delete(queues()?),
        "purge" => Command::Purge(queues()?),
        "clean" => Command::Clean(queues()?),
        "publish" => Command::Publish(PublishArgs {
            root: root.clone(),
            queue: need_queue()?,
            message: match o.get("message") {
                Some(Value::String(m)) => m.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => python_json(other),
            },
            force: b("f"),
            priority: o.get("priority").and_then(Value::as_i64),
            timeout: u("timeout"),
            requeue: b("requeue"),
            requeue_limit: u("requeue_limit"),
            requeue_prio: u("requeue_prio"),
            skip_cleaning: b("skip_cleaning"),
            silent: b("s"),
            common,
        }),
        "consume" => Command::Consume(ConsumeArgs {
            root: root.clone(),
            queue: need_queue()?,
            force: b("f"),
            n: u("n").map(|n| n as usize),
            format: format_or("json"),
            skip_cleaning: b("skip_cleaning"),
            common,
        }),
        "ack" | "nack" => {
            let a = AckArgs {
                root: root.clone(),
                queue: need_queue()?,
                msg_files: files(),
                skip_cleaning: b("skip_cleaning"),
                requeue: b("requeue"),
                common,
            };
            if command == "ack" {
                Command::Ack(a)
            } else {
                Command::Nack(a)
            }
        }
        "del_msg" => Command::DelMsg(DelArgs {
            root: root.clone(),
            queue: need_queue()?,
            msg_files: files(),
            skip_cleaning: b("skip_cleaning"),
            silent: b("s"),
            common,
        }),
        other => return Err(fatal(format!("Unrecognized command: {other}"))),
    };
    run(command)
}

/// The message's keys sorted, as the original prints a message (`key = value`, Python `str`).
fn fields(m: &Message) -> Vec<(String, Value)> {
    let v: Value = serde_json::from_slice(&m.encode_without_checksum()).unwrap_or(Value::Null);
    let mut out: Vec<(String, Value)> = match v {
        Value::Object(map) => map.into_iter().collect(),
        _ => Vec::new(),
    };
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn plain(m: &Message) -> String {
    fields(m)
        .iter()
        .map(|(k, v)| format!("{k} = {}", py_str(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Python's `str()` of a decoded JSON value.
fn py_str(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => py_repr(other),
    }
}

fn py_repr(v: &Value) -> String {
    match v {
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => python_float_repr(f),
            _ => n.to_string(),
        },
        Value::String(s) => {
            let q = if s.contains('\'') && !s.contains('"') {
                '"'
            } else {
                '\''
            };
            let mut out = String::from(q);
            for c in s.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if c == q => {
                        out.push('\\');
                        out.push(c);
                    }
                    c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                        out.push_str(&format!("\\x{:02x}", c as u32))
                    }
                    c => out.push(c),
                }
            }
            out.push(q);
            out
        }
        Value::Array(a) => format!("[{}]", a.iter().map(py_repr).collect::<Vec<_>>().join(", ")),
        Value::Object(o) => format!(
            "{{{}}}",
            o.iter()
                .map(|(k, v)| format!("{}: {}", py_repr(&Value::String(k.clone())), py_repr(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// A message as PyYAML's `yaml.dump` of its dict (block style, sorted keys).
fn yaml_message(m: &Message) -> String {
    fields(m)
        .iter()
        .map(|(k, v)| match v {
            Value::Array(_) | Value::Object(_) => {
                let mut one = std::collections::BTreeMap::new();
                one.insert(k.clone(), v.clone());
                yaml_serde::to_string(&one)
                    .unwrap_or_default()
                    .trim_end()
                    .to_owned()
            }
            v => format!(
                "{}: {}",
                yaml_scalar(&Value::String(k.clone())),
                yaml_scalar(v)
            ),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A scalar as PyYAML (`allow_unicode=False`) writes it: plain when it cannot be read as
/// something else, single-quoted when it could, double-quoted with escapes when it holds
/// characters outside printable ASCII.
fn yaml_scalar(v: &Value) -> String {
    let s = match v {
        Value::Null => return "null".into(),
        Value::Bool(b) => return b.to_string(),
        Value::Number(n) => {
            return match n.as_f64() {
                Some(f) if !n.is_i64() && !n.is_u64() => python_float_repr(f),
                _ => n.to_string(),
            };
        }
        Value::String(s) => s,
        other => {
            return yaml_serde::to_string(other)
                .unwrap_or_default()
                .trim_end()
                .to_owned();
        }
    };
    if s.chars().any(|c| !(' '..='~').contains(&c)) {
        let mut out = String::from('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\r' => out.push_str("\\r"),
                '\0' => out.push_str("\\0"),
                c if (' '..='~').contains(&c) => out.push(c),
                c if (c as u32) < 0x100 => out.push_str(&format!("\\x{:02X}", c as u32)),
                c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04X}", c as u32)),
                c => out.push_str(&format!("\\U{:08X}", c as u32)),
            }
        }
        out.push('"');
        return out;
    }
    let lower = s.to_ascii_lowercase();
    let ambiguous = s.is_empty()
        || s.parse::<f64>().is_ok()
        || s.bytes().all(|b| {
            b.is_ascii_digit() || b == b'_' || b == b':' || b == b'.' || b == b'-' || b == b'+'
        })
        || matches!(
            lower.as_str(),
            "null"
                | "~"
                | "true"
                | "false"
                | "yes"
                | "no"
                | "on"
                | "off"
                | "y"
                | "n"
                | ".inf"
                | ".nan"
        )
        || s.starts_with([
            ' ', '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"',
            '%', '@', '`',
        ])
        || s.ends_with(' ')
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':');
    if ambiguous {
        format!("'{}'", s.replace('\'', "''"))
    } else {
        s.clone()
    }
}
