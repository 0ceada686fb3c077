//! A work queue with at-least-once delivery: writer threads send jobs, the reader handles
//! each and commits it. Kill the process at any point and run it again: every job that was
//! not committed is handled again, none is lost.
//!
//! `cargo run -p dmq --example work_queue [BASE]` (default: a `jobs` queue in the temp dir).

use std::time::Duration;

use dmq::{Commit, Framing, OpenOptions, Queue, Wait};

fn main() -> dmq::Result<()> {
    let base = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("jobs"));
    let options = OpenOptions::new()
        .framing(Framing::Frames)
        .commit(Commit::Explicit);
    let queue = Queue::open_with(&base, &options)?;

    let writers: Vec<_> = (0..3)
        .map(|w| {
            let queue = queue.clone();
            std::thread::spawn(move || -> dmq::Result<()> {
                let mut writer = queue.writer()?;
                for i in 0..5 {
                    writer.send(format!("job {i} from writer {w}").as_bytes())?;
                }
                writer.flush() // on disk before we say so
            })
        })
        .collect();
    for w in writers {
        w.join().expect("writer thread")?;
    }

    let mut reader = queue.reader()?;
    while let Some(job) = reader.recv(Wait::Until(
        std::time::Instant::now() + Duration::from_millis(200),
    ))? {
        println!("handling {}", String::from_utf8_lossy(&job));
        reader.commit()?; // handled: never delivered again
    }
    println!("{}", reader.info()?);
    Ok(())
}
