//! The enricher's `key=value` text lines, logfmt-like, safe to print on a terminal or to feed
//! to a log shipper: whatever a process names itself, one denial is one line and no value can
//! pass for a key or move the cursor.
//!
//! - A value is bare when it is non-empty and every character is printable and none of
//!   space, `"`, `=` or `\`; else it is quoted, with `"` and `\` escaped.
//! - Inside quotes, `\n`, `\r` and `\t` are written so; every other control character (C0,
//!   DEL, C1), the invisible characters that reorder or hide text (bidirectional overrides,
//!   zero-width characters, line and paragraph separators, BOM) and U+FFFD (what invalid
//!   UTF-8 in the input was replaced with) are written as `\u{XXXX}`. A value holding any of
//!   them is always quoted.
//! - Keys are written the same way (they are ours, but the rule costs nothing).

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Characters that are written escaped (`\u{…}`) and force quotes.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffd}'
        )
}

fn needs_quotes(value: &str) -> bool {
    value.is_empty()
        || value
            .chars()
            .any(|c| matches!(c, ' ' | '"' | '=' | '\\') || is_hidden(c))
}

/// Appends `value` bare or quoted and escaped.
pub fn push_value(out: &mut String, value: &str) {
    if !needs_quotes(value) {
        out.push_str(value);
        return;
    }
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_hidden(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One output line (without its newline): `key=value` pairs separated by spaces. Strings are
/// written by [`push_value`]; numbers and booleans as they are; anything else as its JSON,
/// quoted.
pub fn render(fields: &Map<String, Value>) -> String {
    let mut out = String::with_capacity(256);
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        push_value(&mut out, key);
        out.push('=');
        match value {
            Value::String(s) => push_value(&mut out, s),
            Value::Number(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Bool(b) => {
                let _ = write!(out, "{b}");
            }
            other => push_value(&mut out, &other.to_string()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn line(v: Value) -> String {
        render(v.as_object().unwrap())
    }

    #[test]
    fn a_forged_name_stays_one_line_and_one_value() {
        let text = line(json!({"comm": "\naction=allow\u{1b}[7m", "action": "log"}));
        assert_eq!(text, r#"action=log comm="\naction=allow\u{001b}[7m""#);
        assert!(!text.contains('\n') && !text.contains('\u{1b}'));
    }

    #[test]
    fn values_are_quoted_when_they_need_it() {
        for (value, written) in [
            ("/usr/bin/app", "/usr/bin/app"),
            ("read write", r#""read write""#),
            ("a=b", r#""a=b""#),
            (r#"say "hi""#, r#""say \"hi\"""#),
            (r"back\slash", r#""back\\slash""#),
            ("", r#""""#),
            ("tab\there\r", r#""tab\there\r""#),
            ("del\u{7f}c1\u{85}", r#""del\u{007f}c1\u{0085}""#),
            ("evil\u{202e}txt.exe", r#""evil\u{202e}txt.exe""#),
            ("zero\u{200b}width", r#""zero\u{200b}width""#),
            ("bad \u{fffd} utf8", r#""bad \u{fffd} utf8""#),
            ("naïve 名前", r#""naïve 名前""#),
            ("名前", "名前"),
        ] {
            assert_eq!(
                line(json!({ "v": value })),
                format!("v={written}"),
                "{value:?}"
            );
        }
    }

    #[test]
    fn numbers_bare_and_the_rest_as_quoted_json() {
        assert_eq!(
            line(json!({"pid": 42, "ok": true, "list": ["a b"], "none": null})),
            r#"list="[\"a b\"]" none=null ok=true pid=42"#
        );
    }
}
