//! Any text, read as a RawSelinuxProfile's CIL policy the way `validate` and the webhook read
//! one: never a panic, bounded time and memory (the limits `cargo xtask fuzz` passes), and
//! every problem at a position inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syscribe::profile::cil::{RESTRICTED, check_statements, parse, wrap_raw};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (statements, problems) = parse(text);
    let lines = text.lines().count().max(1) + 1;
    for problem in problems.iter().chain(&check_statements(&statements, RESTRICTED)) {
        assert!(problem.at.line >= 1 && problem.at.line <= lines, "{problem:?}");
        assert!(problem.at.column >= 1, "{problem:?}");
    }
    // What is installed parses as one block when the policy itself had no problem.
    if problems.is_empty() {
        let (wrapped, again) = parse(&wrap_raw("fuzz", text));
        assert!(again.is_empty(), "{again:?}");
        let _ = wrapped;
    }
});
