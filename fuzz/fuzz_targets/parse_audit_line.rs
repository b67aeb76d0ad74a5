//! Any line, parsed as an audit record and enriched: never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use syscribe::audit::{
    enrich::{SyscallNames, enrich},
    parse::{Parsed, parse_line},
};

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Ok(Parsed::Record(record)) = parse_line(&line) {
        let mut names = SyscallNames::default();
        let _ = enrich(*record, Some(&"node".into()), None, &mut names);
    }
});
