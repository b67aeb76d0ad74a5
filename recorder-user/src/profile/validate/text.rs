//! The front end: every problem of every document of a text, with its line and column.

use serde_yaml::Value;

use super::{Problem, Severity, Validator};

/// A problem of one document of a text, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// 1-based index of the document in a multi-document text.
    pub document: usize,
    pub position: Option<crate::profile::position::Position>,
    pub problem: Problem,
}

/// Every problem of every document of a YAML text (or a JSON one, `json`: read strictly, as
/// runtimes read it — YAML would forgive a trailing comma). A syntax error is a problem too
/// (with the parser's position and no path) and ends the text: what follows it cannot be read.
pub fn validate_text(validator: &mut Validator, text: &str, json: bool) -> Vec<Located> {
    validate_documents(validator, text, json).1
}

/// [`validate_text`], with how many documents the text holds.
pub fn validate_documents(
    validator: &mut Validator,
    text: &str,
    json: bool,
) -> (usize, Vec<Located>) {
    use serde::Deserialize as _;
    let syntax_error = |line: usize, column: usize, message: String| Located {
        document: 1,
        position: Some(crate::profile::position::Position { line, column }),
        problem: Problem {
            severity: Severity::Error,
            path: String::new(),
            message,
            within: None,
        },
    };
    if text.trim().is_empty() {
        return (
            0,
            vec![Located {
                position: None,
                ..syntax_error(0, 0, "empty: no profile in this file".to_owned())
            }],
        );
    }
    // Before any parser builds anything: size, depth, alias expansion.
    if let Err(err) = crate::profile::guard::check(text) {
        let (line, column) = err.position().unwrap_or((0, 0));
        let mut found = syntax_error(line, column, err.reason());
        if err.position().is_none() {
            found.position = None;
        }
        return (1, vec![found]);
    }
    if json && let Err(err) = serde_json::from_str::<serde_json::Value>(text) {
        let message = err.to_string();
        let message = message.split(" at line ").next().unwrap_or(&message);
        return (
            1,
            vec![syntax_error(
                err.line(),
                err.column(),
                format!("not valid JSON: {message}"),
            )],
        );
    }
    let positions = crate::profile::position::index(text);
    let mut found = Vec::new();
    let mut documents = 0;
    // Lazily: after a syntax error serde_yaml's stream yields that error forever.
    for (i, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        documents += 1;
        match Value::deserialize(document) {
            Ok(value) => {
                let at = positions.get(i);
                found.extend(
                    validator
                        .validate(&value)
                        .into_iter()
                        .map(|problem| Located {
                            document: i + 1,
                            position: at.and_then(|a| {
                                problem
                                    .within
                                    .and_then(|w| a.inside(text, &problem.path, w.line, w.column))
                                    .or_else(|| a.find(&problem.path))
                            }),
                            problem,
                        }),
                );
            }
            Err(err) => {
                let message = err.to_string();
                let message = message.split(" at line ").next().unwrap_or(&message);
                found.push(Located {
                    document: i + 1,
                    position: err.location().map(|l| crate::profile::position::Position {
                        line: l.line(),
                        column: l.column(),
                    }),
                    problem: Problem {
                        severity: Severity::Error,
                        path: String::new(),
                        message: format!("not valid YAML/JSON: {message}"),
                        within: None,
                    },
                });
                break;
            }
        }
    }
    if documents == 0 {
        found.push(Located {
            position: None,
            ..syntax_error(0, 0, "empty: no profile in this file".to_owned())
        });
    }
    (documents, found)
}
