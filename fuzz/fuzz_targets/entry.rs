// The part every libFuzzer binary shares, included by each (`include!`): the shared targets of
// tests/fuzz_targets/mod.rs and one scratch file per fuzzer process.

#[allow(dead_code)] // each binary runs one of the targets
#[path = "../../tests/fuzz_targets/mod.rs"]
mod targets;

static SCRATCH: std::sync::OnceLock<targets::Scratch> = std::sync::OnceLock::new();

/// Writes `data` to the scratch file and reads it as `target` does.
fn run(target: targets::Target, data: &[u8]) {
    let scratch = SCRATCH.get_or_init(|| targets::Scratch::new("input"));
    target.run(scratch.write(data));
}
