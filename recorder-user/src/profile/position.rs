//! Where each field of a YAML/JSON text is: JSON path → line:column, per document. The
//! validator works on parsed values (which carry no positions); this index, built from the
//! parser's events over the same text, gives its problems a place a person can jump to.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser};

/// 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// Positions of one document: a mapping entry is where its key starts, a list item where the
/// item starts.
#[derive(Debug, Default)]
pub struct Positions {
    at: HashMap<String, Position>,
    /// String values written as literal blocks (`|`): where the `|` is. Their lines are the
    /// file's lines, so a position inside such a string (a CIL policy's) maps back to the file.
    literal: HashMap<String, Position>,
}

impl Positions {
    /// The position of `path`, or of its nearest ancestor that has one (a missing field is
    /// reported where its parent is).
    pub fn find(&self, path: &str) -> Option<Position> {
        let mut path = path;
        loop {
            if let Some(p) = self.at.get(path) {
                return Some(*p);
            }
            if path.is_empty() {
                return None;
            }
            // Drop the last segment: `.field` or `[n]` (a top-level field: the document).
            path = &path[..path.rfind(['.', '[']).unwrap_or(0)];
        }
    }

    /// Where `line`:`column` of the string value at `path` is in `text`, when that value is a
    /// literal block (else None: folded or quoted strings do not keep the file's lines).
    pub fn inside(&self, text: &str, path: &str, line: usize, column: usize) -> Option<Position> {
        let start = self.literal.get(path)?;
        // The parser places the scalar at its `|` or at its first line: the content starts on
        // the line after a `|`.
        let at_indicator = text
            .lines()
            .nth(start.line.checked_sub(1)?)
            .and_then(|l| l.chars().nth(start.column.checked_sub(1)?))
            == Some('|');
        let first = if at_indicator {
            start.line + 1
        } else {
            start.line
        };
        // The block's indentation is its first non-blank line's.
        let indent = text
            .lines()
            .skip(first - 1)
            .find(|l| !l.trim().is_empty())
            .map(|l| l.len() - l.trim_start_matches(' ').len())?;
        Some(Position {
            line: first + line - 1,
            column: indent + column,
        })
    }
}

enum Frame {
    /// A mapping: the path of the mapping, and the key whose value comes next (None: a key
    /// comes next).
    Mapping {
        path: String,
        key: Option<String>,
    },
    Sequence {
        path: String,
        next: usize,
    },
}

fn join(prefix: &str, field: &str) -> String {
    if prefix.is_empty() {
        field.to_owned()
    } else {
        format!("{prefix}.{field}")
    }
}

/// The positions of every document in `text`; documents after a syntax error are missing.
pub fn index(text: &str) -> Vec<Positions> {
    let mut documents = Vec::new();
    let mut current: Option<Positions> = None;
    let mut stack: Vec<Frame> = Vec::new();
    for event in Parser::new_from_str(text) {
        let Ok((event, span)) = event else {
            break;
        };
        let here = Position {
            line: span.start.line(),
            column: span.start.col() + 1,
        };
        match event {
            Event::DocumentStart(_) => {
                current = Some(Positions::default());
                stack.clear();
            }
            Event::DocumentEnd => {
                documents.extend(current.take());
            }
            Event::Scalar(..)
            | Event::Alias(_)
            | Event::MappingStart(..)
            | Event::SequenceStart(..) => {
                let Some(doc) = current.as_mut() else {
                    continue;
                };
                // The path of this node, when it is a value (not a key).
                let path = match stack.last_mut() {
                    None => {
                        doc.at.insert(String::new(), here);
                        Some(String::new())
                    }
                    Some(Frame::Sequence { path, next }) => {
                        let item = format!("{path}[{next}]");
                        *next += 1;
                        doc.at.insert(item.clone(), here);
                        Some(item)
                    }
                    Some(Frame::Mapping { path, key }) => match key.take() {
                        Some(key) => Some(join(path, &key)),
                        None => {
                            // A key: only scalar keys name a field.
                            let name = match &event {
                                Event::Scalar(value, ..) => value.to_string(),
                                _ => "?".to_owned(),
                            };
                            let field = join(path, &name);
                            doc.at.entry(field).or_insert(here);
                            *key = Some(name);
                            None
                        }
                    },
                };
                if let (Event::Scalar(_, saphyr_parser::ScalarStyle::Literal, ..), Some(path)) =
                    (&event, &path)
                {
                    doc.literal.insert(path.clone(), here);
                }
                match (event, path) {
                    (Event::MappingStart(..), Some(path)) => {
                        stack.push(Frame::Mapping { path, key: None })
                    }
                    (Event::SequenceStart(..), Some(path)) => {
                        stack.push(Frame::Sequence { path, next: 0 })
                    }
                    // A complex key (mapping or sequence as a key): its contents name nothing.
                    (Event::MappingStart(..), None) => stack.push(Frame::Mapping {
                        path: "?".to_owned(),
                        key: None,
                    }),
                    (Event::SequenceStart(..), None) => stack.push(Frame::Sequence {
                        path: "?".to_owned(),
                        next: 0,
                    }),
                    _ => {}
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            _ => {}
        }
    }
    documents.extend(current.take());
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(doc: &Positions, path: &str) -> (usize, usize) {
        let p = doc.find(path).unwrap_or_else(|| panic!("no {path}"));
        (p.line, p.column)
    }

    #[test]
    fn yaml_keys_and_items() {
        let docs = index(
            "apiVersion: v1\nkind: SeccompProfile\nspec:\n  defaultAction: SCMP_ACT_ERRNO\n  syscalls:\n  - names: [read, \"raed\"]\n    action: SCMP_ACT_ALLOW\n---\nkind: x\n",
        );
        assert_eq!(docs.len(), 2);
        assert_eq!(at(&docs[0], "spec.defaultAction"), (4, 3));
        assert_eq!(at(&docs[0], "spec.syscalls[0].names[1]"), (6, 19));
        assert_eq!(at(&docs[0], "spec.syscalls[0].action"), (7, 5));
        // Missing: where the parent is.
        assert_eq!(at(&docs[0], "spec.syscalls[0].errnoRet"), (6, 5));
        assert_eq!(at(&docs[1], "kind"), (9, 1));
    }

    #[test]
    fn json() {
        let docs = index(
            "{\n  \"defaultAction\": \"SCMP_ACT_ERRNO\",\n  \"syscalls\": [\n    {\"names\": [\"read\", \"opne\"], \"action\": \"SCMP_ACT_ALLOW\"}\n  ]\n}\n",
        );
        assert_eq!(docs.len(), 1);
        assert_eq!(at(&docs[0], "defaultAction"), (2, 3));
        assert_eq!(at(&docs[0], "syscalls[0].names[1]"), (4, 24));
        assert_eq!(at(&docs[0], "syscalls[0].action"), (4, 33));
    }
}
