//! ddmq's message files: `Message::decode` of any bytes (JSON written by other programs).
#![no_main]

use ddmq::format::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Message::decode(data) else {
        return;
    };
    // What we write is ASCII JSON (as Python's json.dumps) that reads back as the same
    // message, and writing that again gives the same bytes.
    let bytes = m.encode();
    assert!(bytes.is_ascii(), "encoded message is not ASCII");
    let again = Message::decode(&bytes).expect("an encoded message decodes");
    assert_eq!(again, m, "message does not survive encode/decode");
    assert_eq!(again.encode(), bytes, "re-encoding is not stable");
    let _ = (m.text(), m.under_limit());
});
