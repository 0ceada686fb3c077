//! The library against the behaviour contract and one test per fixed defect of the original
//! (spec §4): each would fail on the original's behaviour.

use std::collections::HashSet;
use std::fs;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use ddmq::format::{self, SettingsFile};
use ddmq::{AckOutcome, Broker, BrokerOptions, Durability, Error, Order, PublishOptions, Requeue};

fn broker(dir: &Path) -> Broker {
    let b = Broker::open(dir, true).unwrap();
    b.create_queue("q").unwrap();
    b
}

fn quiet() -> PublishOptions {
    PublishOptions::new().skip_cleaning(true)
}

/// Runs `f` in `k` threads at once, each with a broker of its own (separate indexes, as
/// separate processes have); returns their results.
fn on_brokers<T: Send + 'static>(root: &Path, k: usize, f: fn(Broker) -> T) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(k));
    let threads: Vec<_> = (0..k)
        .map(|_| {
            let b = Broker::open(root, false).unwrap();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                f(b)
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

fn bodies(ds: &[ddmq::Delivery]) -> Vec<String> {
    ds.iter().map(|d| d.message.text()).collect()
}

#[test]
fn layout_is_the_originals() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    assert!(matches!(
        Broker::open(&root, false),
        Err(Error::RootMissing { .. })
    ));
    fs::create_dir(&root).unwrap();
    assert!(matches!(
        Broker::open(&root, false),
        Err(Error::RootUninitiated { .. })
    ));
    let b = broker(&root);
    assert_eq!(fs::read(root.join("ddmq.yaml")).unwrap(), b"");
    assert_eq!(
        fs::read_to_string(root.join("ddmq.yaml.example")).unwrap(),
        format::DEFAULT_SETTINGS_YAML
    );
    assert_eq!(
        fs::read_to_string(root.join("q/ddmq.yaml")).unwrap(),
        format::DEFAULT_SETTINGS_YAML
    );
    assert!(root.join("q/work").is_dir());
    assert!(matches!(
        b.create_queue("q"),
        Err(Error::QueueExists { .. })
    ));
    assert!(matches!(
        b.create_queue("../outside"),
        Err(Error::InvalidQueueName { .. })
    ));
    assert!(!dir.path().join("outside").exists());
    let m = b
        .publish("q", "Hello World!", &PublishOptions::new())
        .unwrap();
    assert_eq!(m.priority, 999);
    assert_eq!(m.queue_number.len(), 19);
    let file = root.join("q").join(&m.filename);
    assert_eq!(fs::read(&file).unwrap(), m.encode());
    let v = b.view(None).unwrap();
    assert_eq!(
        (v[0].name.as_str(), v[0].waiting, v[0].at_work),
        ("q", 1, 0)
    );
    let d = b.consume("q", 1).unwrap().pop().unwrap();
    assert!(d.claimed_name().ends_with(&m.filename));
    assert!(d.path().starts_with(root.join("q/work")));
    assert_eq!(b.view(Some(&["q"])).unwrap()[0].at_work, 1);
    assert_eq!(d.ack().unwrap(), AckOutcome::Deleted);
    assert!(b.consume("q", 5).unwrap().is_empty());
}

#[test]
fn defect_1_priorities_are_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    for p in [999, 10, 2, 1000, 5] {
        b.publish("q", format!("p{p}"), &quiet().priority(p))
            .unwrap();
    }
    let got = b.consume("q", 10).unwrap();
    assert_eq!(bodies(&got), ["p2", "p5", "p10", "p999", "p1000"]);
    // The original's string order stays available.
    let b = Broker::open_with(
        dir.path(),
        BrokerOptions::default().order(Order::Lexicographic),
    )
    .unwrap();
    for p in [999, 10, 2] {
        b.publish("q", format!("p{p}"), &quiet().priority(p))
            .unwrap();
    }
    assert_eq!(bodies(&b.consume("q", 10).unwrap()), ["p10", "p2", "p999"]);
}

#[test]
fn fifo_within_a_priority_even_within_one_clock_tick() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    for i in 0..300 {
        b.publish("q", format!("m{i:03}"), &quiet()).unwrap();
    }
    let want: Vec<String> = (0..300).map(|i| format!("m{i:03}")).collect();
    assert_eq!(bodies(&b.consume("q", 300).unwrap()), want);
}

#[test]
fn defect_2_no_reader_ever_sees_a_partial_message() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let qdir = dir.path().join("q");
    let big = "x".repeat(1 << 20);
    let writer = {
        let b = b.clone();
        std::thread::spawn(move || {
            for _ in 0..30 {
                b.publish("q", big.as_str(), &quiet()).unwrap();
            }
        })
    };
    let mut seen = 0;
    while !writer.is_finished() || seen == 0 {
        for e in fs::read_dir(&qdir).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            if format::is_message_file(&name)
                && let Ok(bytes) = fs::read(qdir.join(&name))
            {
                ddmq::Message::decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                seen += 1;
            }
        }
    }
    writer.join().unwrap();
    assert!(seen > 0);
}

#[test]
fn defect_3_concurrent_consumers_claim_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    for i in 0..2000 {
        b.publish("q", format!("m{i}"), &quiet()).unwrap();
    }
    let all: Vec<String> = on_brokers(dir.path(), 8, |b| {
        let mut got = Vec::new();
        loop {
            let batch = b.consume("q", 3).unwrap();
            if batch.is_empty() {
                break;
            }
            for d in batch {
                got.push(d.message.text());
                assert_eq!(d.ack().unwrap(), AckOutcome::Deleted);
            }
        }
        got
    })
    .into_iter()
    .flatten()
    .collect();
    let distinct: HashSet<&String> = all.iter().collect();
    assert_eq!(all.len(), 2000, "duplicates or losses");
    assert_eq!(distinct.len(), 2000);
    let v = &b.view(None).unwrap()[0];
    assert_eq!((v.waiting, v.at_work), (0, 0));
}

/// Claims `n` messages with a 1 s timeout and lets them expire.
fn expired_claims(b: &Broker, n: usize, o: &PublishOptions) {
    for i in 0..n {
        b.publish("q", format!("m{i}"), &o.clone().timeout(1.0))
            .unwrap();
    }
    let claimed = b.consume("q", n).unwrap();
    assert_eq!(claimed.len(), n);
    std::mem::forget(claimed);
    std::thread::sleep(Duration::from_millis(2100));
}

#[test]
fn defect_7_concurrent_cleaners_requeue_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    expired_claims(&b, 500, &quiet().requeue(Requeue::Yes));
    let requeued: usize = on_brokers(dir.path(), 8, |b| b.clean("q", true).unwrap().requeued)
        .into_iter()
        .sum();
    assert_eq!(requeued, 500);
    let v = &b.view(None).unwrap()[0];
    assert_eq!((v.waiting, v.at_work), (500, 0));
    let again = b.consume("q", 1000).unwrap();
    let distinct: HashSet<String> = again.iter().map(|d| d.message.text()).collect();
    assert_eq!(distinct.len(), 500);
    assert!(
        again
            .iter()
            .all(|d| d.redelivered() && d.message.requeue_counter == 1)
    );
}

#[test]
fn expiry_deletes_unflagged_and_requeue_limits_count_deliveries() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    expired_claims(&b, 3, &quiet());
    let r = b.clean("q", true).unwrap();
    assert_eq!((r.requeued, r.deleted), (0, 3));
    assert!(b.consume("q", 5).unwrap().is_empty());

    // L = 0 (unlimited), 1, 2 give ∞, 2, 3 deliveries.
    for (limit, deliveries) in [(0u64, None), (1, Some(2)), (2, Some(3))] {
        let o = quiet().requeue(Requeue::Yes).requeue_limit(limit);
        b.publish("q", "limited", &o).unwrap();
        let mut n = 0;
        while let Some(d) = b.consume("q", 1).unwrap().pop() {
            n += 1;
            let out = d.nack(None).unwrap();
            if n == 6 {
                assert!(matches!(out, AckOutcome::Requeued { .. }));
                b.purge("q").unwrap();
                break;
            }
        }
        assert_eq!(deliveries.unwrap_or(6), n, "limit {limit}");
    }
}

#[test]
fn requeued_copies_follow_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let first = b
        .publish(
            "q",
            "x",
            &quiet()
                .priority(3)
                .timeout(7.0)
                .requeue(Requeue::AtPriority(4)),
        )
        .unwrap();
    let d = b.consume("q", 1).unwrap().pop().unwrap();
    let AckOutcome::Requeued { name } = d.nack(None).unwrap() else {
        panic!("not requeued")
    };
    let m = b.consume("q", 1).unwrap().pop().unwrap();
    assert!(name.starts_with("4."));
    assert_eq!(m.message.priority, 4);
    assert_eq!(m.message.requeue_counter, 1);
    // Kept across requeues (the original dropped both).
    assert_eq!(m.message.id, first.id);
    assert_eq!(m.message.timeout, Some(7.0));
    // `true` requeues at requeue_prio, whose 0 means the queue priority (faithful).
    b.publish("q", "y", &quiet().priority(3).requeue(Requeue::Yes))
        .unwrap();
    m.nack(Some(false)).unwrap();
    let d = b.consume("q", 1).unwrap().pop().unwrap();
    let AckOutcome::Requeued { name } = d.nack(None).unwrap() else {
        panic!()
    };
    assert!(name.starts_with("999."), "{name}");
    // Unless asked to read it as the original's documentation does: 0 is the top.
    let top = Broker::open_with(
        dir.path(),
        BrokerOptions::default().requeue_zero_is_top(true),
    )
    .unwrap();
    let d = top.consume("q", 1).unwrap().pop().unwrap();
    let AckOutcome::Requeued { name } = d.nack(None).unwrap() else {
        panic!()
    };
    assert!(name.starts_with("0."), "{name}");
    // ack never requeues; nack(Some(false)) deletes even a flagged message.
    let d = b.consume("q", 1).unwrap().pop().unwrap();
    assert_eq!(d.ack().unwrap(), AckOutcome::Deleted);
    assert!(matches!(
        b.publish("q", "z", &quiet().requeue(Requeue::AtPriority(0))),
        Err(Error::InvalidOption(_))
    ));
}

#[test]
fn defect_10_priority_zero_is_priority_zero() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    b.publish("q", "default", &quiet()).unwrap();
    let m = b.publish("q", "zero", &quiet().priority(0)).unwrap();
    assert!(m.filename.starts_with("0."));
    assert_eq!(b.consume("q", 1).unwrap()[0].message.text(), "zero");
}

#[test]
fn defect_8_concurrent_settings_writers_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let keys = ["cleaned", "message_timeout", "priority", "requeue_prio"];
    let threads: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let b = Broker::open(dir.path(), false).unwrap();
            let key = key.to_string();
            std::thread::spawn(move || {
                for round in 0..50u64 {
                    let mut patch = SettingsFile::new();
                    patch.insert(key.clone(), (1000 * (i as u64 + 1) + round).into());
                    b.update_settings(Some("q"), &patch).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let s = b.settings(Some("q")).unwrap();
    assert_eq!(
        (s.cleaned, s.message_timeout, s.priority, s.requeue_prio),
        (1049, 2049.0, 3049, 4049)
    );
    assert!(s.requeue);
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("q"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");
}

#[test]
fn defect_4_bad_files_are_quarantined_and_never_wedge_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let q = dir.path().join("q");
    fs::write(q.join("1.1000000000000000000.ddmqbad"), b"{\"message\": ").unwrap();
    fs::write(q.join("1.1000000000000000001.ddmqempty"), b"").unwrap();
    fs::write(q.join("1.notanumber.ddmqx"), b"{}").unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(60);
    for name in ["1.1000000000000000000.ddmqbad", "1.notanumber.ddmqx"] {
        fs::File::options()
            .write(true)
            .open(q.join(name))
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    b.publish("q", "good", &quiet()).unwrap();
    let got = b.consume("q", 5).unwrap();
    assert_eq!(bodies(&got), ["good"]);
    let quarantine = dir.path().join(".quarantine/q");
    assert!(quarantine.join("1.1000000000000000000.ddmqbad").is_file());
    assert!(quarantine.join("1.notanumber.ddmqx").is_file());
    // The young empty file may still be being written: left where it is.
    assert!(q.join("1.1000000000000000001.ddmqempty").is_file());
    // Non-numeric entries in work/ are not ours to judge: a clean leaves them alone.
    fs::write(q.join("work/later.5.6.ddmqx"), b"{}").unwrap();
    fs::write(q.join("work/README"), b"notes").unwrap();
    let r = b.clean("q", true).unwrap();
    assert_eq!((r.requeued, r.deleted), (0, 0));
    assert!(q.join("work/later.5.6.ddmqx").is_file() && q.join("work/README").is_file());
    // The quarantine is not a queue: listing and deleting are unaffected.
    assert_eq!(b.list_queues().unwrap(), ["q"]);
}

#[test]
fn defect_17_delete_refuses_foreign_files_before_removing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    b.publish("q", "keep me", &quiet()).unwrap();
    fs::write(dir.path().join("q/notes.txt"), b"mine").unwrap();
    match b.delete_queue("q", false) {
        Err(Error::ForeignFiles { files, .. }) => assert_eq!(files, ["notes.txt"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(b.view(None).unwrap()[0].waiting, 1);
    b.delete_queue("q", true).unwrap();
    assert!(!dir.path().join("q").exists());
    assert!(matches!(
        b.delete_queue("q", false),
        Err(Error::QueueMissing { .. })
    ));
}

#[test]
fn defect_18_a_half_created_queue_is_completed() {
    let dir = tempfile::tempdir().unwrap();
    let b = Broker::open(dir.path(), true).unwrap();
    fs::create_dir(dir.path().join("half")).unwrap();
    assert!(b.list_queues().unwrap().is_empty());
    let strict = Broker::open(dir.path(), false).unwrap();
    assert!(matches!(
        strict.publish("half", "x", &quiet()),
        Err(Error::QueueMissing { .. })
    ));
    b.create_queue("half").unwrap();
    assert_eq!(b.list_queues().unwrap(), ["half"]);
}

#[test]
fn a_dead_reapers_file_is_finished_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    b.publish("q", "taken", &quiet().requeue(Requeue::Yes))
        .unwrap();
    let d = b.consume("q", 1).unwrap().pop().unwrap();
    // What a reaper killed after its rename leaves behind.
    let claimed = d.claimed_name().to_owned();
    let c = format::ClaimedName::parse(&claimed).unwrap();
    let private = format!(
        ".reap.0123.{}.{}.{}.{}",
        c.expiry, c.waiting.priority, c.waiting.number, c.waiting.id
    );
    fs::rename(d.path(), dir.path().join("q/work").join(&private)).unwrap();
    assert_eq!(d.ack().unwrap(), AckOutcome::Missing);
    // Within the grace period it is left alone (its reaper may be alive).
    assert_eq!(b.clean("q", true).unwrap().requeued, 0);
    let b = Broker::open_with(
        dir.path(),
        BrokerOptions::default().reap_grace(Duration::ZERO),
    )
    .unwrap();
    assert_eq!(b.clean("q", true).unwrap().requeued, 1);
    let again = b.consume("q", 1).unwrap();
    assert_eq!(bodies(&again), ["taken"]);
    assert!(again[0].redelivered());
}

#[test]
fn a_reaper_killed_after_preparing_its_copy_publishes_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    b.publish("q", "taken", &quiet().requeue(Requeue::Yes))
        .unwrap();
    let d = b.consume("q", 1).unwrap().pop().unwrap();
    let claimed = d.claimed_name().to_owned();
    let c = format::ClaimedName::parse(&claimed).unwrap();
    // What a requeue leaves when killed between replacing its private file with the copy
    // and publishing it: the private name is the claim's, the content is the copy's.
    let mut copy = format::Message::decode(&fs::read(d.path()).unwrap()).unwrap();
    copy.requeue_counter += 1;
    copy.queue_number = format!("{}9", c.waiting.number);
    copy.filename = format!(
        "{}.{}.ddmq{}",
        c.waiting.priority, copy.queue_number, copy.id
    );
    let private = format!(
        ".reap.0123-r.{}.{}.{}.{}",
        c.expiry, c.waiting.priority, c.waiting.number, c.waiting.id
    );
    let work = dir.path().join("q/work");
    fs::write(work.join(&private), copy.encode()).unwrap();
    fs::remove_file(d.path()).unwrap();
    assert_eq!(d.ack().unwrap(), AckOutcome::Missing);
    let b = Broker::open_with(
        dir.path(),
        BrokerOptions::default().reap_grace(Duration::ZERO),
    )
    .unwrap();
    assert_eq!(b.clean("q", true).unwrap().requeued, 1);
    // Published as prepared: its own name, counted once; nothing is left to publish again.
    let names: Vec<_> = fs::read_dir(dir.path().join("q"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".ddmq"))
        .collect();
    assert_eq!(names, [copy.filename.clone()]);
    assert_eq!(fs::read_dir(&work).unwrap().count(), 0);
    let again = b.consume("q", 1).unwrap().pop().unwrap();
    assert_eq!(again.message.requeue_counter, 1);
    assert_eq!(again.ack().unwrap(), AckOutcome::Deleted);
    assert_eq!(b.clean("q", true).unwrap().requeued, 0);
    assert!(b.consume("q", 1).unwrap().is_empty());
}

#[test]
fn a_requeue_leaves_nothing_in_work() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    b.publish("q", "back", &quiet().requeue(Requeue::Yes))
        .unwrap();
    let d = b.consume("q", 1).unwrap().pop().unwrap();
    assert!(matches!(
        d.nack(Some(true)).unwrap(),
        AckOutcome::Requeued { .. }
    ));
    assert_eq!(fs::read_dir(dir.path().join("q/work")).unwrap().count(), 0);
    let again = b.consume("q", 1).unwrap();
    assert_eq!(bodies(&again), ["back"]);
    assert!(again[0].redelivered());
}

#[test]
fn the_index_sees_files_other_processes_drop_in() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    for i in 0..5 {
        b.publish("q", format!("ours{i}"), &quiet().priority(5))
            .unwrap();
    }
    assert_eq!(bodies(&b.consume("q", 1).unwrap()), ["ours0"]);
    // Another process (another broker) publishes a more urgent message.
    let other = Broker::open(dir.path(), false).unwrap();
    other.publish("q", "urgent", &quiet().priority(1)).unwrap();
    // And claims one of ours behind our back.
    assert_eq!(bodies(&other.consume("q", 2).unwrap()), ["urgent", "ours1"]);
    other.publish("q", "urgent2", &quiet().priority(1)).unwrap();
    assert_eq!(
        bodies(&b.consume("q", 10).unwrap()),
        ["urgent2", "ours2", "ours3", "ours4"]
    );
}

#[test]
fn durable_mode_publishes_claims_and_acks() {
    let dir = tempfile::tempdir().unwrap();
    broker(dir.path());
    let b = Broker::open_with(
        dir.path(),
        BrokerOptions::default().durability(Durability::Fsync),
    )
    .unwrap();
    b.publish("q", "synced", &quiet()).unwrap();
    let d = b.consume("q", 1).unwrap().pop().unwrap();
    assert_eq!(d.ack().unwrap(), AckOutcome::Deleted);
}

#[test]
fn settings_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let conf = dir.path().join("q/ddmq.yaml");
    fs::write(&conf, b"priority: high\n").unwrap();
    let e = b.publish("q", "x", &quiet()).unwrap_err();
    assert!(
        matches!(&e, Error::Settings { path, .. } if *path == conf),
        "{e}"
    );
    assert!(e.to_string().contains("`priority`"), "{e}");
    fs::write(&conf, b"").unwrap();
    assert_eq!(b.settings(Some("q")).unwrap(), ddmq::Settings::default());
    fs::write(dir.path().join("ddmq.yaml"), b"{priority: 7}").unwrap();
    assert_eq!(b.publish("q", "x", &quiet()).unwrap().priority, 7);
    fs::remove_file(&conf).unwrap();
    let strict = Broker::open(dir.path(), false).unwrap();
    assert!(matches!(
        strict.publish("q", "x", &quiet()),
        Err(Error::QueueMissing { .. })
    ));
    // With `create`, the original's broker completes the queue instead.
    b.publish("q", "x", &quiet()).unwrap();
    assert_eq!(
        fs::read_to_string(&conf).unwrap(),
        format::DEFAULT_SETTINGS_YAML
    );
}

#[test]
fn the_throttled_clean_writes_cleaned_once_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    assert_eq!(b.settings(Some("q")).unwrap().cleaned, 0);
    b.publish("q", "x", &PublishOptions::new()).unwrap();
    let cleaned = b.settings(Some("q")).unwrap().cleaned;
    assert!(cleaned > 1_700_000_000);
    assert!(!b.clean("q", false).unwrap().ran);
    assert!(b.clean("q", true).unwrap().ran);
    // Unknown keys of the file survive the rewrite.
    let conf = dir.path().join("q/ddmq.yaml");
    let text = fs::read_to_string(&conf).unwrap() + "owner: me\n";
    fs::write(&conf, text).unwrap();
    b.clean("q", true).unwrap();
    assert!(fs::read_to_string(&conf).unwrap().contains("owner: me\n"));
}

#[test]
fn delete_message_checks_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let m = b.publish("q", "x", &quiet()).unwrap();
    let path = dir.path().join("q").join(&m.filename);
    assert!(matches!(
        b.delete_message(&dir.path().join("q/ddmq.yaml")),
        Err(Error::BadName { .. })
    ));
    assert!(b.delete_message(&path).unwrap());
    assert!(!b.delete_message(&path).unwrap());
}

#[test]
fn ack_and_nack_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    b.publish("q", "a", &quiet().requeue(Requeue::Yes)).unwrap();
    b.publish("q", "b", &quiet()).unwrap();
    let ds = b.consume("q", 2).unwrap();
    let names: Vec<String> = ds.iter().map(|d| d.claimed_name().to_owned()).collect();
    drop(ds);
    let out = b.nack_names("q", &[&names[0], &names[1]], None).unwrap();
    assert!(matches!(out[0], AckOutcome::Requeued { .. }));
    assert_eq!(out[1], AckOutcome::Deleted);
    assert_eq!(
        b.ack_names("q", &[&names[0]], false).unwrap(),
        [AckOutcome::Missing]
    );
    assert!(matches!(
        b.ack_names("q", &["nonsense"], false),
        Err(Error::BadName { .. })
    ));
}

/// Leaves `n` private reaper files in `work/`, as reapers killed right after their rename
/// leave them.
fn dead_reapers_files(b: &Broker, root: &Path, n: usize) {
    for i in 0..n {
        b.publish("q", format!("m{i}"), &quiet().requeue(Requeue::Yes))
            .unwrap();
    }
    for d in b.consume("q", n).unwrap() {
        let c = format::ClaimedName::parse(d.claimed_name()).unwrap();
        let private = format!(
            ".reap.{i:032x}.{}.{}.{}.{}",
            c.expiry,
            c.waiting.priority,
            c.waiting.number,
            c.waiting.id,
            i = c.waiting.number.parse::<u128>().unwrap()
        );
        fs::rename(d.path(), root.join("q/work").join(&private)).unwrap();
        assert_eq!(d.ack().unwrap(), AckOutcome::Missing);
    }
}

#[test]
fn concurrent_cleaners_finish_a_dead_reapers_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    dead_reapers_files(&b, dir.path(), 200);
    // Older than the grace period; a file a cleaner has just taken over is not.
    let grace = Duration::from_secs(2);
    std::thread::sleep(grace + Duration::from_millis(100));
    let barrier = Arc::new(Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let b =
                Broker::open_with(dir.path(), BrokerOptions::default().reap_grace(grace)).unwrap();
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                b.clean("q", true).unwrap().requeued
            })
        })
        .collect();
    let requeued: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let v = &b.view(None).unwrap()[0];
    assert_eq!((requeued, v.waiting, v.at_work), (200, 200, 0));
    assert!(
        fs::read_dir(dir.path().join("q/work"))
            .unwrap()
            .next()
            .is_none()
    );
}

#[test]
fn an_interrupted_forced_requeue_is_finished_as_a_requeue() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let conf = dir.path().join("q/ddmq.yaml");
    // Not flagged: only the explicit requeue of nack(Some(true)) / release brings it back.
    b.publish("q", "nacked", &quiet()).unwrap();
    b.publish("q", "released", &quiet()).unwrap();
    let mut ds = b.consume("q", 2).unwrap();
    let released = ds.pop().unwrap();
    let nacked = ds.pop().unwrap();
    // The requeue fails half-way (after the claimed file was taken, before the copy).
    let good = fs::read(&conf).unwrap();
    fs::write(&conf, b"priority: x\n").unwrap();
    assert!(matches!(
        nacked.nack(Some(true)),
        Err(Error::Settings { .. })
    ));
    assert!(matches!(released.release(), Err(Error::Settings { .. })));
    fs::write(&conf, good).unwrap();
    let b = Broker::open_with(
        dir.path(),
        BrokerOptions::default().reap_grace(Duration::ZERO),
    )
    .unwrap();
    let r = b.clean("q", true).unwrap();
    assert_eq!((r.requeued, r.deleted), (2, 0));
    let mut got = bodies(&b.consume("q", 5).unwrap());
    got.sort();
    assert_eq!(got, ["nacked", "released"]);
}

#[test]
fn entries_that_cannot_be_read_are_quarantined_and_never_wedge_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let q = dir.path().join("q");
    b.publish("q", "first", &quiet().priority(1)).unwrap();
    // A directory and a FIFO named like messages, served after the first.
    fs::create_dir(q.join("5.1000000000000000000.ddmqdir")).unwrap();
    let fifo = q.join("5.1000000000000000001.ddmqfifo");
    let status = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(status.success());
    b.publish("q", "last", &quiet().priority(9)).unwrap();
    let got = b.consume("q", 5).unwrap();
    assert_eq!(bodies(&got), ["first", "last"]);
    let quarantine = dir.path().join(".quarantine/q");
    assert!(quarantine.join("5.1000000000000000000.ddmqdir").is_dir());
    assert!(quarantine.join("5.1000000000000000001.ddmqfifo").exists());
    // A directory that reached work/ (another client claimed it) does not wedge cleans.
    fs::create_dir(q.join("work/100.5.1000000000000000002.ddmqdir2")).unwrap();
    let r = b.clean("q", true).unwrap();
    assert_eq!(r.quarantined.len(), 1, "{r:?}");
    b.publish("q", "after", &PublishOptions::new()).unwrap();
    assert_eq!(bodies(&b.consume("q", 1).unwrap()), ["after"]);
}

#[test]
fn a_failing_claim_does_not_strand_the_messages_claimed_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let q = dir.path().join("q");
    b.publish("q", "good", &quiet().priority(1)).unwrap();
    let bad = q.join("5.1000000000000000000.ddmqbad");
    fs::write(&bad, b"{").unwrap();
    fs::File::options()
        .write(true)
        .open(&bad)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
    // The quarantine cannot be created: the bad file's claim fails.
    fs::write(dir.path().join(".quarantine"), b"in the way").unwrap();
    let got = b.consume("q", 2).unwrap();
    assert_eq!(bodies(&got), ["good"]);
    assert_eq!(
        got.into_iter().next().unwrap().ack().unwrap(),
        AckOutcome::Deleted
    );
}

/// Every file we write carries the integrity field; a file whose content no longer matches it
/// is set aside like one that is not JSON, one without it (the original's) is delivered.
#[test]
fn integrity_field_in_every_file_written_and_checked_on_read() {
    let dir = tempfile::tempdir().unwrap();
    let b = broker(dir.path());
    let qdir = dir.path().join("q");
    let o = quiet().requeue(Requeue::Yes);
    let m = b
        .publish("q", "pay 10", &o.clone().extra("x-trace", "abc".into()))
        .unwrap();
    let sealed = fs::read(qdir.join(&m.filename)).unwrap();
    assert_eq!(
        format::Message::decode_checked(&sealed).unwrap().1,
        format::Integrity::Verified
    );
    for (key, value) in [
        ("priority", serde_json::Value::from(1)),
        ("ddmq_crc32c", "crc32c:00000000".into()),
        ("x", "crc32c:00000000".into()),
    ] {
        let e = b
            .publish("q", "no", &quiet().extra(key, value))
            .unwrap_err();
        assert!(
            matches!(&e, Error::InvalidOption(d) if d.contains(key)),
            "{e}"
        );
    }
    let e = b
        .publish(
            "q",
            "no",
            &quiet().extra("k", 1.into()).extra("k", 2.into()),
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidOption(d) if d.contains("twice")),
        "{e}"
    );
    // Requeued copies are written with the field too.
    let d = b.consume("q", 1).unwrap().pop().unwrap();
    let AckOutcome::Requeued { name } = d.nack(None).unwrap() else {
        panic!("not requeued")
    };
    let bytes = fs::read(qdir.join(&name)).unwrap();
    let (copy, integrity) = format::Message::decode_checked(&bytes).unwrap();
    assert_eq!(
        (integrity, copy.requeue_counter),
        (format::Integrity::Verified, 1)
    );
    // The body changed on disk, still valid JSON: set aside, bytes untouched, never delivered.
    let damaged = String::from_utf8(bytes)
        .unwrap()
        .replace("pay 10", "pay 90");
    let path = qdir.join(&name);
    fs::write(&path, &damaged).unwrap();
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    let age = |p: &Path| {
        fs::File::options()
            .write(true)
            .open(p)
            .and_then(|f| f.set_modified(hour_ago))
            .unwrap()
    };
    age(&path);
    assert!(b.consume("q", 10).unwrap().is_empty());
    let aside = dir.path().join(".quarantine/q").join(&name);
    assert_eq!(fs::read_to_string(&aside).unwrap(), damaged);
    // The same change in a file without the field (as the original writes it) is delivered:
    // the original's format cannot tell.
    let mut unsealed = copy.clone();
    unsealed.message = "pay 90".into();
    fs::write(&path, unsealed.encode_without_checksum()).unwrap();
    age(&path);
    let d = b.consume("q", 10).unwrap().pop().unwrap();
    assert_eq!(d.message.text(), "pay 90");
}
