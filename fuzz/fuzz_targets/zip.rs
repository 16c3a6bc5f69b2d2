//! libFuzzer entry of the `zip` target (see tests/fuzz_targets/mod.rs).
#![no_main]

// Each binary runs one of the shared targets.
#[allow(dead_code)]
#[path = "../../tests/fuzz_targets/mod.rs"]
mod targets;

use std::sync::OnceLock;

use targets::{Scratch, Target};

static SCRATCH: OnceLock<Scratch> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let scratch = SCRATCH.get_or_init(|| Scratch::new("input"));
    Target::Zip.run(scratch.write(data));
});
