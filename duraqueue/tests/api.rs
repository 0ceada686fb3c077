//! The public API: the original's test suite ported (explicit lengths instead of `strlen`),
//! regressions for the original's defects (spec §4), transactions, group commit, the C
//! original's files read through the queue, and a model test against a `VecDeque`.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use std::fs::OpenOptions as FsOpen;
use std::os::unix::fs::FileExt;

use duraqueue::format::{self, Format, Superblock};
use duraqueue::{AckMode, DuraQueue, Error, OpenOptions, SharedWriter};

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary directory")
}

fn items(q: &DuraQueue) -> Vec<Vec<u8>> {
    q.iter().map(<[u8]>::to_vec).collect()
}

// ---- the original's tests --------------------------------------------------------------------

#[test]
fn size_65_is_rejected() {
    let d = dir();
    let err = DuraQueue::open(d.path().join("q"), 65).unwrap_err();
    assert!(matches!(err, Error::InvalidSize { size: 65, .. }), "{err}");
}

#[test]
fn a_size_that_is_not_a_page_multiple_is_rejected_not_an_exit() {
    let d = dir();
    let err = DuraQueue::open(d.path().join("q"), 8224).unwrap_err();
    assert!(
        matches!(err, Error::InvalidSize { size: 8224, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("page size"), "{err}");
}

#[test]
fn a_new_queue_is_empty_and_polling_it_is_false_not_a_crash() {
    let d = dir();
    let mut q = DuraQueue::open(d.path().join("q"), 1 << 13).unwrap();
    assert_eq!((q.count(), q.used(), q.peek()), (0, 0, None));
    assert!(!q.poll().unwrap());
}

#[test]
fn count_and_used_follow_offers_and_polls() {
    let d = dir();
    let mut q = DuraQueue::open(d.path().join("q"), 1 << 13).unwrap();
    q.offer(b"abcd").unwrap();
    assert_eq!((q.count(), q.used()), (1, 96));
    q.offer(&[7u8; 64]).unwrap();
    assert_eq!((q.count(), q.used()), (2, 96 + 160));
    assert!(q.poll().unwrap());
    assert_eq!((q.count(), q.used()), (1, 160));
}

#[test]
fn fifo() {
    let d = dir();
    let mut q = DuraQueue::open(d.path().join("q"), 1 << 13).unwrap();
    for item in [&b"one"[..], b"two", b"three"] {
        q.offer(item).unwrap();
    }
    let mut got = Vec::new();
    while let Some(item) = q.pop_with(<[u8]>::to_vec).unwrap() {
        got.push(item);
    }
    assert_eq!(got, [&b"one"[..], b"two", b"three"]);
}

#[test]
fn reopen_as_writer_and_as_reader_keeps_the_items() {
    let d = dir();
    let path = d.path().join("q");
    let mut q = DuraQueue::open(&path, 1 << 13).unwrap();
    q.offer(b"kept 1").unwrap();
    q.offer(b"kept 2").unwrap();
    q.offer(b"polled").unwrap();
    drop(q);
    let q = DuraQueue::open(&path, 1 << 13).unwrap();
    assert_eq!(items(&q), [&b"kept 1"[..], b"kept 2", b"polled"]);
    drop(q);
    let mut r = DuraQueue::open_reader(&path).unwrap();
    assert_eq!(r.count(), 3);
    r.poll().unwrap();
    drop(r);
    let q = DuraQueue::open(&path, 1 << 13).unwrap();
    assert_eq!(items(&q), [&b"kept 2"[..], b"polled"]);
}

#[test]
fn items_larger_than_the_ring_are_too_large_and_a_full_ring_is_full() {
    let d = dir();
    let mut q = DuraQueue::open(d.path().join("q"), 1 << 13).unwrap();
    for len in [8 << 10, 128 << 10] {
        let err = q.offer(&vec![0u8; len]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    }
    // N − 64 bytes needs padding too, so it does not fit either (spec §5.4).
    let err = q.offer(&vec![0u8; (1 << 13) - 64]).unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }), "{err}");
    q.offer(&vec![1u8; (1 << 13) - 65]).unwrap();
    let err = q.offer(b"").unwrap_err();
    assert!(
        matches!(
            err,
            Error::Full {
                needed: 96,
                free: 0
            }
        ),
        "{err}"
    );
    assert_eq!(q.count(), 1);
}

#[test]
fn offers_across_the_ring_end_are_contiguous_slices() {
    let d = dir();
    let path = d.path().join("q");
    let mut q = DuraQueue::open(&path, 1 << 13).unwrap();
    q.offer(&vec![b'a'; 5000]).unwrap();
    q.poll().unwrap();
    let straddling = vec![b'b'; 3000];
    q.offer(&straddling).unwrap();
    assert_eq!(q.peek(), Some(&straddling[..]));
    drop(q);
    // The straddling record is read back after a reopen (the original lost it).
    let q = DuraQueue::open(&path, 1 << 13).unwrap();
    assert_eq!(items(&q), [straddling]);
}

#[test]
fn a_thousand_one_byte_items_in_128_kib() {
    let d = dir();
    let mut q = DuraQueue::open(d.path().join("q"), 128 << 10).unwrap();
    let batch: Vec<[u8; 1]> = (0..1024u32).map(|i| [(i % 251) as u8]).collect();
    q.offer_batch(&batch).unwrap();
    assert_eq!(q.count(), 1024);
    for (i, item) in q.iter().enumerate() {
        assert_eq!(item, [(i as u32 % 251) as u8]);
    }
}

// ---- regressions of the original's defects (spec §4) ------------------------------------------

#[test]
fn a_hundred_laps_never_fill_the_ring_for_good() {
    // Defect 3: the tail was never reduced mod N, so after about one lap the queue was full.
    let d = dir();
    let path = d.path().join("q");
    let mut q = DuraQueue::open(&path, 1 << 13).unwrap();
    for i in 0..52 * 100u32 {
        let item = i.to_be_bytes();
        q.offer(&item).unwrap();
        assert_eq!(q.pop_with(<[u8]>::to_vec).unwrap(), Some(item.to_vec()));
    }
    assert_eq!((q.count(), q.used()), (0, 0));
    q.offer(b"still room").unwrap();
    drop(q);
    assert_eq!(
        items(&DuraQueue::open(&path, 1 << 13).unwrap()),
        [b"still room"]
    );
}

#[test]
fn the_ring_fills_to_exactly_its_size_and_reopens_full() {
    let d = dir();
    let path = d.path().join("q");
    let mut q = DuraQueue::open(&path, 1 << 13).unwrap();
    // 32-byte payloads make 128-byte records: 64 of them fill 8 KiB exactly.
    for i in 0..64u8 {
        q.offer(&[i; 32]).unwrap();
    }
    assert_eq!(q.used(), 1 << 13);
    assert!(matches!(q.offer(b""), Err(Error::Full { free: 0, .. })));
    q.poll().unwrap();
    q.offer(&[64; 32]).unwrap(); // wraps to where the first record was
    drop(q);
    let q = DuraQueue::open(&path, 1 << 13).unwrap();
    let got = items(&q);
    assert_eq!(got.len(), 64);
    assert_eq!(got.first().unwrap(), &[1u8; 32]);
    assert_eq!(got.last().unwrap(), &[64u8; 32]);
}

#[test]
fn ids_past_255_keep_fifo_across_reopen() {
    // Defect 4: ids were compared byte-swapped, so with 300 items FIFO broke on reopen.
    for count in [300u32, 70_000] {
        let d = dir();
        let path = d.path().join("q");
        let size = 16 << 20;
        let mut q = DuraQueue::open(&path, size).unwrap();
        let batch: Vec<[u8; 4]> = (0..count).map(u32::to_be_bytes).collect();
        q.offer_batch(&batch).unwrap();
        drop(q);
        let mut q = DuraQueue::open(&path, size).unwrap();
        assert_eq!(q.count(), count as usize);
        assert!(
            q.iter().zip(&batch).all(|(a, b)| a == b),
            "{count} items out of order"
        );
        // And the writer continues after the last id, not over live records.
        q.offer(b"next").unwrap();
        assert_eq!(q.next_seq(), u64::from(count) + 1);
        drop(q);
        let q = DuraQueue::open(&path, size).unwrap();
        assert_eq!(q.iter().last(), Some(&b"next"[..]));
    }
}

/// Writes a v1 file of `n` bytes holding `payloads` with ids from `first_id`, as a C writer
/// that has been running for a long time would leave it.
fn write_v1_file(path: &Path, n: u64, first_id: u32, payloads: &[&[u8]]) {
    let mut ring = vec![0u8; n as usize + 1];
    let mut at = 0usize;
    for (i, payload) in payloads.iter().enumerate() {
        let size = format::record_size(payload.len() as u64) as usize;
        let id = u64::from(first_id.wrapping_add(i as u32));
        assert!(format::encode_record(
            Format::V1,
            id,
            payload,
            &mut ring[at..at + size]
        ));
        at += size;
    }
    std::fs::write(path, ring).unwrap();
}

#[test]
fn ids_wrapping_at_2_pow_32_keep_fifo() {
    let d = dir();
    let path = d.path().join("q");
    write_v1_file(&path, 1 << 13, u32::MAX - 1, &[b"a", b"b", b"c"]);
    let mut q = DuraQueue::open(&path, 1 << 13).unwrap();
    assert_eq!(items(&q), [b"a", b"b", b"c"]);
    q.offer(b"d").unwrap();
    drop(q);
    assert_eq!(
        items(&DuraQueue::open(&path, 1 << 13).unwrap()),
        [b"a", b"b", b"c", b"d"]
    );
}

#[test]
fn polls_zero_header_and_footer_so_stale_records_never_come_back() {
    // Defect 6: after ids restarted, stale footers of consumed records resurrected them.
    let d = dir();
    let path = d.path().join("q");
    let mut q = DuraQueue::open(&path, 1 << 13).unwrap();
    for item in [&b"old 0"[..], b"old 1", b"old 2"] {
        q.offer(item).unwrap();
    }
    while q.poll().unwrap() {}
    drop(q);
    // Empty: the writer restarts at id 0 and offset 0, over the consumed records.
    let mut q = DuraQueue::open(&path, 1 << 13).unwrap();
    assert_eq!(q.next_seq(), 0);
    q.offer(b"new 0").unwrap();
    drop(q);
    let q = DuraQueue::open(&path, 1 << 13).unwrap();
    assert_eq!(items(&q), [b"new 0"]);
    assert_eq!(q.recovery_report().discarded, 0);
}

#[test]
fn a_reopen_with_another_size_is_a_mismatch_naming_both() {
    let d = dir();
    let path = d.path().join("q");
    drop(DuraQueue::open(&path, 1 << 13).unwrap());
    let err = DuraQueue::open(&path, 1 << 14).unwrap_err();
    assert!(
        matches!(
            err,
            Error::SizeMismatch {
                expected: 16384,
                found: 8192,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn two_writers_on_one_file_are_locked_out() {
    let d = dir();
    let path = d.path().join("q");
    let _writer = DuraQueue::open(&path, 1 << 13).unwrap();
    let err = DuraQueue::open(&path, 1 << 13).unwrap_err();
    assert!(matches!(err, Error::Locked { role: "writer", .. }), "{err}");
    let _reader = DuraQueue::open_reader(&path).unwrap();
    let err = DuraQueue::open_reader(&path).unwrap_err();
    assert!(matches!(err, Error::Locked { role: "reader", .. }), "{err}");
}

#[test]
fn a_reader_in_the_same_process_sees_commits_after_refresh_and_the_writer_sees_polls() {
    let d = dir();
    let path = d.path().join("q");
    let mut w = DuraQueue::open(&path, 1 << 13).unwrap();
    let mut r = DuraQueue::open_reader(&path).unwrap();
    w.offer(b"first").unwrap();
    assert_eq!(r.count(), 0);
    assert_eq!(r.refresh().unwrap(), 1);
    assert_eq!(r.peek(), Some(&b"first"[..]));
    r.poll().unwrap();
    // The writer learns of the poll when it refreshes (or when an offer finds no room).
    assert_eq!(w.count(), 1);
    w.refresh().unwrap();
    assert_eq!(w.count(), 0);
    // A ring filled by the writer drains through the reader and fills again.
    for round in 0..3u8 {
        while w.offer(&[round; 100]).is_ok() {}
        let mut drained = 0;
        while r.wait_for_items(Some(std::time::Duration::ZERO)).unwrap() {
            assert_eq!(r.pop_with(<[u8]>::to_vec).unwrap().unwrap(), [round; 100]);
            drained += 1;
        }
        assert!(drained > 30, "round {round}: drained {drained}");
    }
}

// ---- transactions, batches, group commit ---------------------------------------------------

#[test]
fn a_transaction_is_visible_at_commit_and_gone_if_dropped() {
    let d = dir();
    let path = d.path().join("q");
    let mut q = DuraQueue::open(&path, 1 << 13).unwrap();
    {
        let mut txn = q.txn();
        txn.offer(b"rolled back 1").unwrap();
        txn.offer(b"rolled back 2").unwrap();
    }
    assert_eq!(q.count(), 0);
    let mut txn = q.txn();
    let first = txn.offer(b"a").unwrap();
    txn.offer(b"b").unwrap();
    let seqs = txn.commit().unwrap().unwrap();
    assert_eq!(seqs, first..first + 2);
    assert_eq!(q.durable_seq(), Some(first + 1));
    drop(q);
    assert_eq!(
        items(&DuraQueue::open(&path, 1 << 13).unwrap()),
        [b"a", b"b"]
    );
}

#[test]
fn a_batch_that_does_not_fit_is_all_or_nothing() {
    let d = dir();
    let mut q = DuraQueue::open(d.path().join("q"), 1 << 13).unwrap();
    let batch = vec![[0u8; 100]; 100]; // 100 × 192 B > 8 KiB
    let err = q.offer_batch(&batch).unwrap_err();
    assert!(matches!(err, Error::Full { .. }), "{err}");
    assert_eq!(q.count(), 0);
    q.offer(b"after").unwrap();
    assert_eq!(items(&q), [b"after"]);
}

#[test]
fn manual_ack_persists_polls_together_and_a_crash_before_it_redelivers() {
    let d = dir();
    let path = d.path().join("q");
    let options = OpenOptions::new(1 << 13).ack(AckMode::Manual);
    let mut q = DuraQueue::open_with(&path, &options).unwrap();
    q.offer_batch(&[b"1", b"2", b"3"]).unwrap();
    q.poll().unwrap();
    drop(q); // no ack: as a crash would
    let mut q = DuraQueue::open_with(&path, &options).unwrap();
    assert_eq!(items(&q), [b"1", b"2", b"3"]);
    q.poll().unwrap();
    q.poll().unwrap();
    q.ack().unwrap();
    drop(q);
    assert_eq!(items(&DuraQueue::open(&path, 1 << 13).unwrap()), [b"3"]);
}

#[test]
fn shared_writer_threads_all_land_in_per_thread_order() {
    let d = dir();
    let path = d.path().join("q");
    let writer = Arc::new(SharedWriter::new(DuraQueue::open(&path, 4 << 20).unwrap()));
    let threads: Vec<_> = (0..16u8)
        .map(|t| {
            let writer = Arc::clone(&writer);
            std::thread::spawn(move || {
                for i in 0..200u16 {
                    let mut item = vec![t];
                    item.extend_from_slice(&i.to_be_bytes());
                    writer.offer_durable(&item).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let q = Arc::into_inner(writer).unwrap().into_inner();
    assert_eq!(q.durable_seq(), Some(16 * 200 - 1));
    drop(q);
    let q = DuraQueue::open(&path, 4 << 20).unwrap();
    let mut next = [0u16; 16];
    for item in q.iter() {
        let (t, i) = (item[0] as usize, u16::from_be_bytes([item[1], item[2]]));
        assert_eq!(i, next[t], "thread {t} out of order");
        next[t] += 1;
    }
    assert_eq!(next, [200; 16]);
}

#[test]
fn v2_keeps_the_consumer_position_and_64_bit_sequences() {
    let d = dir();
    let path = d.path().join("q");
    let options = OpenOptions::new(1 << 13).format(Format::V2);
    let mut q = DuraQueue::open_with(&path, &options).unwrap();
    for i in 0..300u32 {
        q.offer(&i.to_be_bytes()).unwrap();
        q.poll().unwrap();
    }
    q.offer(b"live").unwrap();
    drop(q);
    let mut q = DuraQueue::open_with(&path, &OpenOptions::new(0)).unwrap();
    assert_eq!(q.format(), Format::V2);
    assert_eq!(
        (items(&q), q.peek_seq()),
        (vec![b"live".to_vec()], Some(300))
    );
    assert_eq!(q.persisted_head(), 300);
    q.poll().unwrap();
    drop(q);
    let q = DuraQueue::open_with(&path, &OpenOptions::new(0)).unwrap();
    assert_eq!((q.count(), q.next_seq()), (0, 301));
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_failed_sync_poisons_the_handle_and_loses_nothing_acknowledged() {
    use duraqueue::fault_injection::fail_next_syncs;
    for sync in [duraqueue::SyncMode::Msync, duraqueue::SyncMode::Fdatasync] {
        let d = dir();
        let path = d.path().join("q");
        let mut q = DuraQueue::open_with(&path, &OpenOptions::new(1 << 13).sync(sync)).unwrap();
        q.offer(b"acknowledged").unwrap();
        fail_next_syncs(1);
        let err = q.offer(b"not acknowledged").unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
        // Never retried: a retried fsync can claim success for lost data.
        let err = q.offer(b"after").unwrap_err();
        assert!(matches!(err, Error::Poisoned { .. }), "{err}");
        assert!(matches!(q.poll(), Err(Error::Poisoned { .. })));
        assert_eq!(
            items(&q),
            [b"acknowledged"],
            "the failed offer is not visible"
        );
        drop(q);
        assert_eq!(
            items(&DuraQueue::open(&path, 1 << 13).unwrap()),
            [b"acknowledged"]
        );
    }
}

// ---- regressions from review: crash images and interleavings built by hand ----------------

fn pwrite(path: &Path, at: u64, bytes: &[u8]) {
    let f = FsOpen::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}
fn item64(i: u8) -> Vec<u8> {
    vec![i; 64] // 160-byte record
}

/// Crash image: records 0..8 offered in one batch (not yet acknowledged), power lost while
/// syncing: the page with record 5's header did not reach the disk, 6 and 7 did.
fn crash_image(path: &Path, format: Format) {
    let mut q = DuraQueue::open_with(path, &OpenOptions::new(8192).format(format)).unwrap();
    let batch: Vec<_> = (0..8).map(item64).collect();
    q.offer_batch(&batch).unwrap();
    drop(q);
    let base = if format == Format::V2 { 4096 } else { 0 };
    pwrite(path, base + 5 * 160, &[0; 32]);
}

#[test]
fn records_left_out_after_a_gap_never_come_back_v1() {
    let d = dir();
    let path = d.path().join("q");
    crash_image(&path, Format::V1);
    let mut q = DuraQueue::open(&path, 8192).unwrap();
    assert_eq!(q.count(), 5);
    assert_eq!(q.recovery_report().discarded, 2);
    for _ in 0..5 {
        q.poll().unwrap();
    }
    drop(q);
    let q = DuraQueue::open(&path, 8192).unwrap();
    assert_eq!(
        items(&q),
        Vec::<Vec<u8>>::new(),
        "discarded records resurrected"
    );
}

#[test]
fn a_writer_never_relinks_records_left_out_after_a_gap() {
    let d = dir();
    let path = d.path().join("q");
    crash_image(&path, Format::V1);
    let mut q = DuraQueue::open(&path, 8192).unwrap();
    q.offer(&[b'X'; 64]).unwrap();
    let added = q.refresh().unwrap();
    assert_eq!(
        (added, q.count()),
        (0, 6),
        "refresh adopted discarded records"
    );
}

#[test]
fn records_left_out_after_a_gap_never_come_back_v2() {
    let d = dir();
    let path = d.path().join("q");
    crash_image(&path, Format::V2);
    let mut q = DuraQueue::open(&path, 8192).unwrap();
    assert_eq!(q.count(), 5);
    q.offer(&[b'X'; 64]).unwrap();
    drop(q);
    let q = DuraQueue::open(&path, 8192).unwrap();
    assert_eq!(
        q.count(),
        6,
        "v2 recovery delivered {:?}",
        items(&q).iter().map(|i| i[0]).collect::<Vec<_>>()
    );
}

#[cfg(feature = "fault-injection")]
#[test]
fn refresh_never_skips_the_sync_of_unsynced_records() {
    use duraqueue::fault_injection::fail_next_syncs;
    let d = dir();
    let path = d.path().join("q");
    crash_image(&path, Format::V1);
    let mut q = DuraQueue::open(&path, 8192).unwrap();
    q.offer_unsynced(&[b'X'; 64]).unwrap(); // the facade's send
    q.refresh().unwrap(); // the facade's recv when nothing is deliverable
    fail_next_syncs(1);
    assert!(
        q.sync_published().is_err(),
        "flush(Synced) returned Ok without syncing X"
    );
}

#[cfg(feature = "fault-injection")]
#[test]
fn shared_writer_never_acknowledges_without_a_sync() {
    use duraqueue::fault_injection::fail_next_syncs;
    let d = dir();
    let w = SharedWriter::new(DuraQueue::open(d.path().join("q"), 8192).unwrap());
    for i in 0..10 {
        w.offer_durable(&item64(i)).unwrap();
    }
    w.with_queue(|q| {
        while q.poll().unwrap() {}
        q.refresh().unwrap(); // empty ring: rescan resets positions to 0
    });
    fail_next_syncs(1);
    let r = w.offer_durable(b"must be synced");
    assert!(r.is_err(), "offer_durable returned {r:?} without any sync");
}

#[test]
fn v1_payload_bytes_at_offset_0_do_not_make_the_file_v2() {
    let d2 = dir();
    let p2 = d2.path().join("q");
    let mut q = DuraQueue::open(&p2, 8192).unwrap();
    for i in 0..50 {
        q.offer(&item64(i)).unwrap(); // 0..8000
    }
    q.poll().unwrap(); // frees 0..160
    let mut big = vec![7u8; 200]; // record 8000..8000+288 -> wraps to 96
    big[160..168].copy_from_slice(b"DQRSv2\0\0"); // payload byte 160 sits at 8032+160-8192 = 0
    q.offer(&big).unwrap();
    drop(q);
    let r = DuraQueue::open(&p2, 8192);
    assert!(r.is_ok(), "a valid v1 file no longer opens: {:?}", r.err());
}

#[test]
fn v2_with_a_damaged_slot_0_opens_as_v2() {
    let d = dir();
    let path = d.path().join("q");
    let mut q = DuraQueue::open_with(&path, &OpenOptions::new(8192).format(Format::V2)).unwrap();
    q.offer(b"a").unwrap();
    q.offer(b"b").unwrap();
    q.poll().unwrap(); // gen 2 in slot 0
    q.poll().unwrap(); // gen 3 in slot 1
    q.offer(b"live").unwrap();
    drop(q);
    pwrite(&path, 0, &[0; 64]); // torn/garbled slot 0; slot 1 is valid
    let q = DuraQueue::open_reader(&path).unwrap();
    assert_eq!(
        (q.format(), items(&q)),
        (Format::V2, vec![b"live".to_vec()])
    );
}

#[test]
fn v2_superblock_positions_out_of_range_are_corrupt() {
    let d = dir();
    let path = d.path().join("q");
    drop(DuraQueue::open_with(&path, &OpenOptions::new(8192).format(Format::V2)).unwrap());
    let sb = Superblock {
        page_size: 4096,
        ring_size: 8192,
        generation: 9,
        head_seq: u64::MAX - 1,
        head_offset: 0,
    };
    pwrite(&path, 0, &sb.encode());
    let err = DuraQueue::open(&path, 8192).unwrap_err();
    assert!(matches!(err, Error::Corrupt { offset: 32, .. }), "{err}");
}

// ---- the C original's files -------------------------------------------------------------------

fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/duraqueue");
    assert!(
        dir.join("manifest.json").exists(),
        "the C fixtures are expected in {} (the shared folder next to the checkout)",
        dir.display()
    );
    dir
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn files_written_by_the_c_original_read_exactly_and_continue() {
    let dir = fixtures();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    for entry in manifest["files"].as_array().unwrap() {
        let name = entry["file"].as_str().unwrap();
        let ring = entry["ring_size"].as_u64().unwrap();
        let expected: Vec<Vec<u8>> = entry["expected_items_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| unhex(h.as_str().unwrap()))
            .collect();
        // A copy: opening and polling write to the file.
        let scratch = tempfile::tempdir().unwrap();
        let copy = scratch.path().join(name);
        std::fs::copy(dir.join(name), &copy).unwrap();

        let mut reader = DuraQueue::open_reader(&copy).unwrap();
        assert_eq!(reader.count(), expected.len(), "{name}");
        assert_eq!(items(&reader), expected, "{name}");
        drop(reader);

        let mut writer = DuraQueue::open(&copy, ring).unwrap();
        writer.offer(b"appended by rust").unwrap();
        drop(writer);
        reader = DuraQueue::open_reader(&copy).unwrap();
        let mut all = expected.clone();
        all.push(b"appended by rust".to_vec());
        let mut got = Vec::new();
        while let Some(item) = reader.pop_with(<[u8]>::to_vec).unwrap() {
            got.push(item);
        }
        assert_eq!(got, all, "{name}: the old items, then ours");
        assert!(!reader.poll().unwrap(), "{name}: one more poll is empty");
    }
}

// ---- model test -----------------------------------------------------------------------------

mod model {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Offer(usize),
        Batch(Vec<usize>),
        RolledBack(usize),
        Poll,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0usize..700).prop_map(Op::Offer),
            1 => proptest::collection::vec(0usize..200, 1..6).prop_map(Op::Batch),
            1 => (0usize..200).prop_map(Op::RolledBack),
            3 => Just(Op::Poll),
            1 => Just(Op::Reopen),
        ]
    }

    fn payload(n: u64, len: usize) -> Vec<u8> {
        (0..len).map(|i| (n as usize * 31 + i) as u8).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        #[test]
        fn the_queue_behaves_like_a_vecdeque(
            ops in proptest::collection::vec(op(), 1..120),
            v2 in any::<bool>(),
        ) {
            let d = dir();
            let path = d.path().join("q");
            let format = if v2 { Format::V2 } else { Format::V1 };
            let options = OpenOptions::new(1 << 13).format(format);
            let mut q = DuraQueue::open_with(&path, &options).unwrap();
            let mut model: VecDeque<Vec<u8>> = VecDeque::new();
            let mut counter = 0u64;
            for op in ops {
                match op {
                    Op::Offer(len) => {
                        counter += 1;
                        let item = payload(counter, len);
                        match q.offer(&item) {
                            Ok(_) => model.push_back(item),
                            Err(Error::Full { .. }) => {}
                            Err(e) => return Err(TestCaseError::fail(e.to_string())),
                        }
                    }
                    Op::Batch(lens) => {
                        let batch: Vec<Vec<u8>> = lens.iter().map(|&len| { counter += 1; payload(counter, len) }).collect();
                        match q.offer_batch(&batch) {
                            Ok(_) => model.extend(batch),
                            Err(Error::Full { .. }) => {}
                            Err(e) => return Err(TestCaseError::fail(e.to_string())),
                        }
                    }
                    Op::RolledBack(len) => {
                        let mut txn = q.txn();
                        let _ = txn.offer(&payload(999, len));
                    }
                    Op::Poll => {
                        let got = q.pop_with(<[u8]>::to_vec).unwrap();
                        prop_assert_eq!(got, model.pop_front());
                    }
                    Op::Reopen => {
                        drop(q);
                        q = DuraQueue::open_with(&path, &OpenOptions::new(0)).unwrap();
                    }
                }
                prop_assert_eq!(q.count(), model.len());
                prop_assert_eq!(q.peek().map(<[u8]>::to_vec), model.front().cloned());
            }
            drop(q);
            let q = DuraQueue::open_with(&path, &OpenOptions::new(0)).unwrap();
            prop_assert_eq!(items(&q), Vec::from(model));
        }
    }
}
