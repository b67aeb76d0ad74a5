//! "Did you mean": the closest known word to a misspelled one.

use super::fields::ARCHES;

/// Words longer than this get no "did you mean" (every name it could suggest is far shorter).
const MAX_SUGGESTED_LEN: usize = 64;

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = (row[j] + 1)
                .min(current + 1)
                .min(previous + usize::from(ca != *cb));
            previous = current;
        }
    }
    row[b.len()]
}

/// ` (did you mean "x"?)` for the closest candidate: at most a third of the part of the word
/// that differs from it (after their common prefix — `SCMP_ARCH_` says nothing) may change,
/// and at least 2 edits (a swapped pair of letters is two); or one is the other cut short. Ties go to the longer common
/// prefix (`open` → `openat`, not `fsopen`).
pub(crate) fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    // The edit distance costs length × length: a word far longer than any candidate (the
    // longest syscall name has 22 characters) gets none, so hostile 16 KB names cost nothing.
    if word.len() > MAX_SUGGESTED_LEN {
        return String::new();
    }
    let word = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter_map(|c| {
            let lower = c.to_ascii_lowercase();
            let common = word
                .bytes()
                .zip(lower.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            let d = distance(&word, &lower);
            let limit = ((word.len() - common) / 3).max(2);
            // One is the other cut short (`SCMP_CMP_EQUAL`, `SCMP_CMP_MASKED`).
            let (short, long) = (word.len().min(lower.len()), word.len().max(lower.len()));
            let cut_short = common == short && short * 3 >= long * 2;
            (d <= limit || cut_short).then_some((d, std::cmp::Reverse(common), c))
        })
        .min()
        .map(|(_, _, c)| format!(" (did you mean {c:?}?)"))
        .unwrap_or_default()
}

/// Other names people give architectures.
const ARCH_ALIASES: [(&str, &str); 7] = [
    ("x86_32", "SCMP_ARCH_X86"),
    ("amd64", "SCMP_ARCH_X86_64"),
    ("x86_64", "SCMP_ARCH_X86_64"),
    ("arm64", "SCMP_ARCH_AARCH64"),
    ("i386", "SCMP_ARCH_X86"),
    ("i686", "SCMP_ARCH_X86"),
    ("x86", "SCMP_ARCH_X86"),
];

/// The suggestion for an unknown architecture: aliases (`amd64`, `SCMP_ARCH_ARM64`) and names
/// without the `SCMP_ARCH_` prefix first, then spelling.
pub(super) fn arch_suggestion(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let bare = lower.strip_prefix("scmp_arch_").unwrap_or(&lower);
    if let Some((_, arch)) = ARCH_ALIASES.iter().find(|(alias, _)| *alias == bare) {
        return format!(" (did you mean {arch:?}?)");
    }
    let prefixed = format!("SCMP_ARCH_{}", bare.to_ascii_uppercase());
    if let Some((arch, _)) = ARCHES.iter().find(|(n, _)| *n == prefixed) {
        return format!(" (did you mean {arch:?}?)");
    }
    suggestion(name, ARCHES.iter().map(|(n, _)| *n))
}
