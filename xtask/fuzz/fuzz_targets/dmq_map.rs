//! dmq's control file (the 12,320-byte map): `MapImage::decode` of any bytes.
#![no_main]

use dmq::format::{MAP_LEN, MapImage, OFF_PATHS, PATH_LEN};
use libfuzzer_sys::fuzz_target;

fn check(bytes: &[u8]) {
    let Ok(map) = MapImage::decode(bytes) else {
        return;
    };
    // A decoded map re-encodes: same 32 bytes of fields, the same paths up to their NUL, and
    // it decodes back to the same value.
    let encoded = map.encode().expect("a decoded map encodes");
    assert_eq!(encoded.len(), MAP_LEN);
    assert_eq!(
        encoded[..32],
        bytes[..32],
        "fields do not re-encode to the same bytes"
    );
    for (i, path) in map.paths.iter().enumerate() {
        let field = &bytes[OFF_PATHS[i]..][..PATH_LEN];
        assert_eq!(&field[..path.len()], &path[..]);
        assert_eq!(field[path.len()], 0);
        assert_eq!(encoded[OFF_PATHS[i]..][..=path.len()], field[..=path.len()]);
    }
    assert_eq!(MapImage::decode(&encoded).as_ref(), Ok(&map));
}

fuzz_target!(|data: &[u8]| {
    // As is (mostly the wrong size: an error naming it), then zero-padded or cut to the exact
    // size so the field checks are reached.
    check(data);
    let mut image = data.to_vec();
    image.resize(MAP_LEN, 0);
    check(&image);
});
