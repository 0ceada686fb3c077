//! Property tests of the wire format: frames from the network are untrusted, so decoding
//! any bytes returns a value or a typed error, never panics; everything we encode decodes
//! back to itself; our escaping is valid JSON, pure ASCII, and reads back to the same text.

use dsmq::format::{self, FrameError, Request};
use proptest::prelude::*;

fn any_request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (any::<String>(), any::<String>())
            .prop_map(|(topic, message)| Request::Put { topic, message }),
        any::<String>().prop_map(|topic| Request::Get { topic }),
        any::<String>().prop_map(|topic| Request::GetLatest { topic }),
        any::<String>().prop_map(|topic| Request::Shutdown { topic }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_bytes_decode_or_fail_cleanly(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        match format::decode_request(&bytes) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(matches!(e.close_code(), 1003 | 1007));
                prop_assert!(e.close_reason().len() <= format::MAX_CLOSE_REASON);
            }
        }
        let _ = format::decode_reply(&bytes);
    }

    #[test]
    fn json_shaped_garbage_is_named(action in "[a-z_]{0,12}", topic in any::<Option<String>>(), n in any::<i64>()) {
        let mut obj = serde_json::Map::new();
        obj.insert("action".into(), action.clone().into());
        if let Some(t) = &topic {
            obj.insert("topic".into(), t.clone().into());
        }
        obj.insert("message".into(), n.into());
        let frame = serde_json::to_vec(&obj).unwrap();
        match format::decode_request(&frame) {
            Ok(r) => {
                // A numeric message is never accepted for a put; other actions ignore it.
                let accepted = !matches!(r, Request::Put { .. })
                    && (topic.is_some() || matches!(r, Request::Shutdown { .. }));
                prop_assert!(accepted, "accepted {:?}", r);
            }
            Err(FrameError::UnknownAction(a)) => prop_assert_eq!(a, action),
            Err(FrameError::InvalidRequest(m)) => prop_assert!(m.contains('`')),
            Err(other) => prop_assert!(false, "unexpected {other:?}"),
        }
    }

    #[test]
    fn requests_round_trip(request in any_request()) {
        let text = format::encode_request(&request);
        prop_assert!(text.is_ascii());
        prop_assert_eq!(format::decode_request(text.as_bytes()).unwrap(), request);
    }

    #[test]
    fn replies_round_trip_and_match_serde(message in any::<String>()) {
        let reply = format::encode_reply(&message);
        prop_assert!(reply.is_ascii());
        prop_assert_eq!(format::decode_reply(reply.as_bytes()).unwrap(), message.clone());
        let value: serde_json::Value = serde_json::from_str(&reply).unwrap();
        prop_assert_eq!(value["message"].as_str().unwrap(), message.as_str());
    }
}
