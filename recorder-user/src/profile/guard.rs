//! Limits checked on profile text before it is parsed for real.
//!
//! A few kilobytes of YAML can stand for gigabytes: an alias names a node already seen, and
//! aliases of aliases multiply ("billion laughs"); deep nesting makes parsers recurse or
//! rescan. One streaming pass over the parser's events — nothing is built — measures what the
//! text would expand to and refuses it before serde_yaml (which expands every alias) or the
//! position index see it. Go's YAML library, which the API server's clients use, refuses
//! excessive aliasing the same way; nothing a real profile needs comes near these limits.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// The most bytes a profile file may have (the API server stores objects of at most 1.5 MiB;
/// a recorded profile of every syscall is about 20 KiB).
pub const MAX_PROFILE_BYTES: u64 = 4 << 20;
/// The deepest nesting of sequences and mappings (a profile needs 5).
pub const MAX_DEPTH: usize = 64;
/// The most values (scalars, sequences, mappings — aliases counted as what they stand for) in
/// one file: a profile naming every syscall of every architecture has under 10,000.
pub const MAX_NODES: u64 = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    #[error("{} bytes is more than the {MAX_PROFILE_BYTES} a profile may have", .0)]
    TooBig(usize),
    #[error("{line}:{column}: nested more than {MAX_DEPTH} levels deep")]
    TooDeep { line: usize, column: usize },
    #[error(
        "{line}:{column}: the text stands for more than {MAX_NODES} values once its aliases are expanded (excessive aliasing)"
    )]
    TooMany { line: usize, column: usize },
}

impl GuardError {
    /// Line and column (1-based) where the limit was crossed, if at a place.
    pub fn position(&self) -> Option<(usize, usize)> {
        match *self {
            Self::TooBig(_) => None,
            Self::TooDeep { line, column } | Self::TooMany { line, column } => Some((line, column)),
        }
    }

    /// The reason without the position.
    pub fn reason(&self) -> String {
        let text = self.to_string();
        match self.position() {
            Some(_) => text
                .splitn(3, ':')
                .nth(2)
                .unwrap_or_default()
                .trim()
                .to_owned(),
            None => text,
        }
    }
}

/// Fails when `text` nests too deep or expands to too many values. Syntax errors are left to
/// the real parser, which says them with more context.
pub fn check(text: &str) -> Result<(), GuardError> {
    if text.len() as u64 > MAX_PROFILE_BYTES {
        return Err(GuardError::TooBig(text.len()));
    }
    // Per open collection: its expanded size so far, and its anchor (0: none).
    let mut open: Vec<(u64, usize)> = Vec::new();
    // Anchor id → expanded size of the node it names.
    let mut anchors: HashMap<usize, u64> = HashMap::new();
    let mut total: u64 = 0;
    // The sum of the open collections' sizes so far, kept as they change.
    let mut pending: u64 = 0;
    for event in Parser::new_from_str(text) {
        let (event, span) = match event {
            Ok(event) => event,
            // The scanner reads a flow collection's openings ahead and stops at 256 of them:
            // that is nesting too deep, not a syntax error to hand on (the real parser would
            // spend minutes on it).
            Err(err) if err.info().contains("recursion limit") => {
                return Err(GuardError::TooDeep {
                    line: err.marker().line(),
                    column: err.marker().col() + 1,
                });
            }
            Err(_) => return Ok(()),
        };
        let (line, column) = (span.start.line(), span.start.col() + 1);
        // The size of a finished node (and its anchor), added to its parent.
        let finished = match event {
            Event::Scalar(_, _, anchor, _) => Some((1, anchor)),
            Event::Alias(anchor) => Some((anchors.get(&anchor).copied().unwrap_or(1), 0)),
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                if open.len() >= MAX_DEPTH {
                    return Err(GuardError::TooDeep { line, column });
                }
                open.push((1, anchor));
                pending += 1;
                None
            }
            Event::SequenceEnd | Event::MappingEnd => open.pop().inspect(|(size, _)| {
                pending -= size;
            }),
            Event::DocumentStart(_) => {
                open.clear();
                pending = 0;
                None
            }
            _ => None,
        };
        if let Some((size, anchor)) = finished {
            if anchor != 0 {
                anchors.insert(anchor, size);
            }
            match open.last_mut() {
                Some((parent, _)) => {
                    *parent = parent.saturating_add(size);
                    pending = pending.saturating_add(size);
                }
                None => total = total.saturating_add(size),
            }
            // A collection's size is only known at its end; the running sizes of the open
            // ones bound it from below, so the check also fires inside a huge collection.
            if total.saturating_add(pending) > MAX_NODES {
                return Err(GuardError::TooMany { line, column });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The classic: each level's list names the one before ten times.
    fn laughs(levels: usize) -> String {
        let mut text = String::from("a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n");
        for i in 1..levels {
            let prev = format!("*a{}", i - 1);
            let items = [prev.as_str(); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{items}]\n"));
        }
        text
    }

    #[test]
    fn alias_bombs_are_refused_before_they_expand() {
        let text = laughs(9);
        assert!(text.len() < 1000);
        let started = std::time::Instant::now();
        let err = check(&text).unwrap_err();
        assert!(matches!(err, GuardError::TooMany { .. }), "{err}");
        assert!(err.to_string().contains("excessive aliasing"), "{err}");
        // The verdict comes from one pass over < 1 KB, not from expanding it.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
        // A few aliases, as people use them, are fine.
        check(&laughs(3)).unwrap();
    }

    #[test]
    fn deep_nesting_is_refused_at_the_limit_and_fast() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        check(&ok).unwrap();
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            check(&deep).unwrap_err(),
            GuardError::TooDeep {
                line: 1,
                column: MAX_DEPTH + 1
            }
        );
        // 600 KB of nesting: refused at level 65, not after scanning it all.
        let huge = "[".repeat(600_000);
        let started = std::time::Instant::now();
        let verdict = check(&huge);
        assert!(
            matches!(verdict, Err(GuardError::TooDeep { .. })),
            "{verdict:?}"
        );
        eprintln!("600 KB of '[': refused in {:?}", started.elapsed());
        let block: String = (0..200).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert!(matches!(check(&block), Err(GuardError::TooDeep { .. })));
    }

    #[test]
    fn many_plain_values_are_counted_too() {
        let text = format!("[{}]", vec!["a"; MAX_NODES as usize].join(","));
        assert!(matches!(check(&text), Err(GuardError::TooMany { .. })));
        let text = format!("[{}]", vec!["a"; 10_000].join(","));
        check(&text).unwrap();
    }
}
