//! dsmq's WebSocket request frames: `decode_request`, the server's parser of every frame a
//! client sends (text or binary), and `decode_reply`, the client's parser.
#![no_main]

use dsmq::format::{decode_reply, decode_request, encode_reply, encode_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match decode_request(data) {
        Ok(request) => {
            // The request as the Python client writes it reads back as the same request.
            let wire = encode_request(&request);
            assert!(wire.is_ascii());
            assert_eq!(decode_request(wire.as_bytes()), Ok(request));
        }
        Err(e) => {
            // Every error closes the connection with a code and a reason that fits the frame.
            assert!(matches!(e.close_code(), 1003 | 1007));
            assert!(e.close_reason().len() <= dsmq::format::MAX_CLOSE_REASON);
        }
    }
    if let Ok(message) = decode_reply(data) {
        assert_eq!(decode_reply(encode_reply(&message).as_bytes()), Ok(message));
    }
    // Any text as a put round-trips (topics and messages are arbitrary strings).
    let text = String::from_utf8_lossy(data);
    let (topic, message) = text.split_at(
        text.char_indices()
            .nth(text.chars().count() / 2)
            .map_or(text.len(), |c| c.0),
    );
    let put = dsmq::format::Request::Put {
        topic: topic.into(),
        message: message.into(),
    };
    assert_eq!(decode_request(encode_request(&put).as_bytes()), Ok(put));
});
