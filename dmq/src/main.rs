//! `dmq`: print a queue's map, run a reader, or run a writer (the original's `-p`, `-r`,
//! `-w`, plus the queue, the framing and a count).

#![forbid(unsafe_code)]

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Parser};
use dmq::{Framing, MapInfo, Queue, Wait};

#[derive(Parser)]
#[command(
    name = "dmq",
    version,
    about = "Durable message queue over two alternating data files and a map file",
    long_about = "Durable message queue over two alternating data files and a map file.\n\n\
        A queue is three files: BASE0 and BASE1 hold the records, BASEmap (12,320 bytes) says \
        which file the reader drains and which one writers append to. One reader, any number \
        of writers, in any processes. Files are compatible with the original C dmq.",
    after_help = "Examples:\n  dmq -w -n 1000            send 1..1000 to the queue `q` (files q0, q1, qmap)\n  \
        printf 'a\\nb\\n' | dmq -q /tmp/jobs -w -   send each line of standard input\n  \
        dmq -q /tmp/jobs -r --nowait --print   print what is queued, then stop\n  \
        dmq -q /tmp/jobs -p       show the map\n\n\
        Exit status: 0 on success, 1 on a queue or I/O error, 2 on a usage error.",
    group(ArgGroup::new("action").args(["print_map", "read", "write"]))
)]
struct Cli {
    /// Print the map: the seven `iofs.log.*` lines of the original. Never creates files.
    #[arg(short = 'p')]
    print_map: bool,
    /// Run the reader: receive messages, printing `count = N` every 100,000.
    #[arg(short = 'r')]
    read: bool,
    /// Run a writer: send `1`, `2`, `3`, … (or the lines of standard input with `-`).
    #[arg(short = 'w')]
    write: bool,
    /// With -w: `-` sends each line of standard input instead of numbers.
    #[arg(value_name = "-", requires = "write")]
    input: Option<String>,
    /// Basepath of the queue: the files are BASE0, BASE1 and BASEmap.
    #[arg(short = 'q', value_name = "BASE", default_value = "q")]
    base: PathBuf,
    /// Framing of a queue this command creates (default newlines); for an existing queue,
    /// the framing it must have (another one is an error). `checked` (ours, not the
    /// original's) adds a length and a CRC-32C to every record, so damage is detected.
    #[arg(short = 'm', value_name = "MODE",
          value_parser = ["nulls", "newlines", "frames", "raw", "checked"])]
    mode: Option<String>,
    /// Stop after COUNT messages (reader) or send COUNT messages (writer).
    #[arg(short = 'n', value_name = "COUNT")]
    count: Option<u64>,
    /// Reader: stop when the queue is empty instead of waiting.
    #[arg(long, requires = "read")]
    nowait: bool,
    /// Reader: write each message to standard output, one per line.
    #[arg(long, requires = "read", conflicts_with = "hex")]
    print: bool,
    /// Reader: write each message as one line of lowercase hex.
    #[arg(long, requires = "read")]
    hex: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            match e.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = e.print();
                    return ExitCode::SUCCESS;
                }
                ErrorKind::UnknownArgument => eprintln!("Error, unknown option"),
                _ => {}
            }
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    if !(cli.print_map || cli.read || cli.write) {
        eprintln!("Error, no -r or -w option");
        return ExitCode::from(2);
    }
    // clap's `requires` does not see a missing flag (its default counts as given): check.
    for (given, flag, needs) in [
        (cli.nowait, "--nowait", cli.read),
        (cli.print, "--print", cli.read),
        (cli.hex, "--hex", cli.read),
        (cli.input.is_some(), "-", cli.write),
    ] {
        if given && !needs {
            let action = if flag == "-" { "-w" } else { "-r" };
            eprintln!("Error, {flag} is only valid with {action}");
            return ExitCode::from(2);
        }
    }
    if cli.input.as_deref().is_some_and(|i| i != "-") {
        eprintln!("Error, unknown option");
        eprintln!("the only argument -w takes is `-` (standard input)");
        return ExitCode::from(2);
    }
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dmq: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &Cli) -> Result<(), Box<dyn std::error::Error>> {
    if cli.print_map {
        print!("{}", MapInfo::load(&cli.base)?);
        return Ok(());
    }
    let framing: Option<Framing> = cli.mode.as_deref().map(str::parse).transpose()?;
    let queue = Queue::open(&cli.base, framing)?;
    if let Some(asked) = framing
        && queue.framing() != asked
    {
        return Err(format!(
            "{}: the queue's framing (mode at offset 12) is {}, not {asked} as -m asks",
            queue.paths()[2].display(),
            queue.framing()
        )
        .into());
    }
    if cli.read {
        read(cli, &queue)
    } else {
        write(cli, &queue)
    }
}

fn read(cli: &Cli, queue: &Queue) -> Result<(), Box<dyn std::error::Error>> {
    let mut reader = queue.reader()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let show = cli.print || cli.hex;
    let mut count: u64 = 0;
    while cli.count.is_none_or(|n| count < n) {
        let message = match reader.try_recv()? {
            Some(m) => m,
            None if cli.nowait => break,
            None => {
                // Nothing now: let what was printed out before blocking.
                out.flush()?;
                match reader.recv(Wait::Forever)? {
                    Some(m) => m,
                    None => continue,
                }
            }
        };
        count += 1;
        if cli.hex {
            let mut line = String::with_capacity(message.len() * 2 + 1);
            for b in message.iter() {
                line.push_str(&format!("{b:02x}"));
            }
            line.push('\n');
            out.write_all(line.as_bytes())?;
        } else if cli.print {
            out.write_all(&message)?;
            out.write_all(b"\n")?;
        }
        if !show && count.is_multiple_of(100_000) {
            writeln!(out, "count = {count}")?;
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(())
}

fn write(cli: &Cli, queue: &Queue) -> Result<(), Box<dyn std::error::Error>> {
    let mut writer = queue.writer()?;
    if cli.input.is_some() {
        let stdin = std::io::stdin();
        let limit = cli.count.map_or(usize::MAX, |n| n as usize);
        for line in stdin.lock().split(b'\n').take(limit) {
            writer.send(&line?)?;
        }
    } else {
        let mut i: u64 = 1;
        while cli.count.is_none_or(|n| i <= n) {
            writer.send(i.to_string().as_bytes())?;
            i += 1;
        }
    }
    writer.flush()?;
    Ok(())
}
