//! `duraqueue`: create, inspect, fill and drain queue files from the command line.

#![forbid(unsafe_code)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use duraqueue::{DuraQueue, Format, OpenOptions};

#[derive(Parser)]
#[command(
    name = "duraqueue",
    version,
    about = "Durable mmap'd ring queues: create, inspect, offer, poll, check",
    after_help = "Files in the v1 format are shared with the C duraqueue library."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create an empty queue file with a ring of SIZE bytes (a multiple of the page size).
    Create {
        /// The queue file.
        path: PathBuf,
        /// Ring size: bytes, or with a K/M/G suffix (KiB, MiB, GiB).
        #[arg(long, short, value_parser = duraqueue::parse_size)]
        size: u64,
        /// On-disk format: v1 (the C original's) or v2 (checksums, persisted position).
        #[arg(long, value_enum, default_value = "v1")]
        format: FormatArg,
    },
    /// Show size, use, record count, positions and format.
    Info {
        /// The queue file.
        path: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the records with their sequence numbers and file offsets.
    Dump {
        /// The queue file.
        path: PathBuf,
        /// Print JSON (payloads as hex).
        #[arg(long)]
        json: bool,
    },
    /// Offer items durably: the ITEMS given, or each line of standard input.
    Offer {
        /// The queue file (created with --size if missing).
        path: PathBuf,
        /// Items; none or `-`: read lines from standard input.
        items: Vec<String>,
        /// Ring size when the file has to be created.
        #[arg(long, short, value_parser = duraqueue::parse_size)]
        size: Option<u64>,
    },
    /// Remove items from the head, printing each.
    Poll {
        /// The queue file.
        path: PathBuf,
        /// How many items (default: all).
        #[arg(long, short = 'n')]
        count: Option<usize>,
        /// Print each item as one line of lowercase hex instead of text.
        #[arg(long)]
        hex: bool,
    },
    /// Scan the whole ring; exit 2 and name the offset when a record is damaged.
    Check {
        /// The queue file.
        path: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    V1,
    V2,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("duraqueue: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Opens an existing queue for inspection: without locks, so a running writer and reader
/// are not disturbed.
fn inspect(path: &PathBuf) -> duraqueue::Result<DuraQueue> {
    DuraQueue::open_with(
        path,
        &OpenOptions::new(0).create(false).lock(false).reader(true),
    )
}

fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Create { path, size, format } => {
            if path.exists() {
                return Err(format!("{}: already exists", path.display()).into());
            }
            let format = match format {
                FormatArg::V1 => Format::V1,
                FormatArg::V2 => Format::V2,
            };
            if let Err(e) = DuraQueue::open_with(&path, &OpenOptions::new(size).format(format))
                .and_then(DuraQueue::close)
            {
                // The file did not exist: leave nothing half-made behind (a full disk).
                let _ = std::fs::remove_file(&path);
                return Err(e.into());
            }
            writeln!(out, "created {} ({size} bytes, {format:?})", path.display())?;
        }
        Command::Info { path, json } => {
            let q = inspect(&path)?;
            let report = q.recovery_report();
            if json {
                let info = serde_json::json!({
                    "path": path,
                    "format": format!("{:?}", q.format()).to_lowercase(),
                    "size": q.size(),
                    "used": q.used(),
                    "unused": q.unused(),
                    "records": q.count(),
                    "head_seq": q.peek_seq(),
                    "next_seq": q.next_seq(),
                    "discarded": report.discarded,
                    "bytes_scanned": report.bytes_scanned,
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
            } else {
                writeln!(out, "file:      {}", path.display())?;
                writeln!(out, "format:    {:?}", q.format())?;
                writeln!(out, "size:      {} bytes", q.size())?;
                writeln!(out, "used:      {} bytes", q.used())?;
                writeln!(out, "records:   {}", q.count())?;
                match q.peek_seq() {
                    Some(seq) => writeln!(out, "head seq:  {seq}")?,
                    None => writeln!(out, "head seq:  - (empty)")?,
                }
                writeln!(out, "next seq:  {}", q.next_seq())?;
                writeln!(
                    out,
                    "discarded: {} (complete records outside the live chain)",
                    report.discarded
                )?;
                // The original's `dq info` line, for scripts written against it.
                writeln!(out, "Item count: {}", q.count())?;
            }
        }
        Command::Dump { path, json } => {
            let q = inspect(&path)?;
            if json {
                let records: Vec<_> = q
                    .records()
                    .map(|(seq, offset, payload)| {
                        serde_json::json!({"seq": seq, "offset": offset, "len": payload.len(), "hex": hex(payload)})
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&records)?)?;
            } else {
                for (seq, offset, payload) in q.records() {
                    writeln!(
                        out,
                        "seq {seq:>6}  offset {offset:>10}  len {:>6}  {}",
                        payload.len(),
                        String::from_utf8_lossy(payload).escape_debug()
                    )?;
                }
            }
        }
        Command::Offer { path, items, size } => {
            let options = match size {
                Some(size) => OpenOptions::new(size),
                None => OpenOptions::new(0).create(false),
            };
            let mut q = DuraQueue::open_with(&path, &options)?;
            let from_stdin = items.is_empty() || items == ["-"];
            let mut offered = 0usize;
            if from_stdin {
                for line in std::io::stdin().lock().lines() {
                    q.offer(line?.as_bytes())?;
                    offered += 1;
                }
            } else {
                let batch: Vec<&[u8]> = items.iter().map(String::as_bytes).collect();
                offered = batch.len();
                q.offer_batch(&batch)?;
            }
            eprintln!("offered {offered} item(s)");
        }
        Command::Poll {
            path,
            count,
            hex: as_hex,
        } => {
            let mut q =
                DuraQueue::open_with(&path, &OpenOptions::new(0).create(false).reader(true))?;
            let limit = count.unwrap_or(usize::MAX);
            let mut polled = 0;
            while polled < limit {
                let Some(line) = q.pop_with(|item| {
                    if as_hex {
                        hex(item)
                    } else {
                        String::from_utf8_lossy(item).into_owned()
                    }
                })?
                else {
                    break;
                };
                writeln!(out, "{line}")?;
                polled += 1;
            }
        }
        Command::Check { path } => {
            let q = inspect(&path)?;
            let report = q.recovery_report();
            writeln!(
                out,
                "{}: {} records delivered, {} discarded, {} bytes scanned",
                path.display(),
                report.delivered,
                report.discarded,
                report.bytes_scanned
            )?;
            if let Some(stopped) = &report.stopped {
                writeln!(out, "damaged record at {stopped}")?;
                return Ok(ExitCode::from(2));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
