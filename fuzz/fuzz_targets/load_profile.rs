//! Any text, read as a profile file the way `run`, `pull -f`, `validate` and the webhook read
//! one: never a panic, and — with the limits `cargo xtask fuzz` passes to libFuzzer — never an
//! allocation over 256 MB nor an input over 10 s (alias bombs, deep nesting, huge lists).
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use syscribe::profile::{
    enforce::compile,
    load::parse_profile,
    validate::{Validator, validate_text},
};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(seccomp) = parse_profile(Path::new("fuzz"), text) {
        // Builds the filter in memory; nothing is loaded.
        let _ = compile(&seccomp);
    }
    let mut validator = Validator::default();
    let _ = validate_text(&mut validator, text, false);
    let _ = validate_text(&mut validator, text, true);
});
