//! Declares the `loom` cfg, under which the ring protocols are model-checked.
fn main() {
    println!("cargo::rustc-check-cfg=cfg(loom)");
}
