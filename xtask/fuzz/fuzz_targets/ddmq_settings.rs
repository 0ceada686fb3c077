//! ddmq's `ddmq.yaml`: `decode_settings` of any bytes, applied as the broker applies it.
#![no_main]

use ddmq::format::{Settings, decode_settings, encode_settings};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = decode_settings(data) else {
        return;
    };
    let mut s = Settings::default();
    if s.apply(&file).is_err() {
        return;
    }
    // The broker rewrites a valid file with `encode_settings` (update_settings keeps the
    // user's other keys): what it writes must read back as the same keys and values, or be
    // an error naming the key (never a silently dropped or changed entry).
    match encode_settings(&file) {
        Ok(text) => {
            let back = decode_settings(text.as_bytes()).expect("written settings parse");
            assert_eq!(
                back, file,
                "settings file does not survive encode/decode:\n{text}"
            );
        }
        Err(e) => assert!(e.0.starts_with('`'), "error does not name the key: {e:?}"),
    }
    // The effective settings written as a complete file read back the same.
    let full = encode_settings(&s.to_file()).expect("effective settings encode");
    let mut again = Settings::default();
    again
        .apply(&decode_settings(full.as_bytes()).expect("written settings parse"))
        .expect("written settings apply");
    assert_eq!(
        again, s,
        "effective settings do not survive a write:\n{full}"
    );
});
