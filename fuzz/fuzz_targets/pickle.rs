//! libFuzzer entry of the `pickle` target (see tests/fuzz_targets/mod.rs).
#![no_main]

include!("entry.rs");

libfuzzer_sys::fuzz_target!(|data: &[u8]| run(targets::Target::Pickle, data));
