//! Environment-variable expansion on the raw config text, before YAML parsing.
//!
//! Syntax: `${NAME}` (a problem if `NAME` is unset), `${NAME:-default}` (the
//! default when `NAME` is unset or empty) and `$${` for a literal `${`. A `$`
//! not followed by `{` is kept as is. Names are `[A-Za-z_][A-Za-z0-9_]*`.
//!
//! Expansion works line by line and never adds or removes a line: a reference
//! must close on its own line and a value containing a line break is rejected.
//! So YAML line numbers stay right, and [`ColumnMap`] maps the columns of an
//! expanded line back to the original text (a position inside an expanded value
//! maps to the `$` that produced it).
//!
//! Full-line comments (first non-blank character `#`) are copied unexpanded, so
//! a commented-out `${NAME}` never fails. The price: a line of a YAML block
//! scalar that starts with `#` is not expanded either.
//!
//! What this does not do: it does not know YAML. A value is inserted verbatim,
//! so one containing `: ` or `#` changes the document's meaning unless the
//! reference sits inside quotes. A failed reference is left in the text as
//! written, so parsing can go on and report the file's other problems.

use std::collections::BTreeMap;

/// The result of [`expand`]: the text to parse, the failed references and the
/// column map back to the original text.
#[derive(Debug)]
pub(super) struct Expanded {
    pub text: String,
    pub problems: Vec<ExpandProblem>,
    pub columns: ColumnMap,
}

/// A reference that could not be expanded, at its `$` in the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ExpandProblem {
    pub line: usize,
    pub column: usize,
    /// The column of the same `$` in the expanded text.
    pub expanded_column: usize,
    pub message: String,
}

/// Per line, the replaced spans, in order; columns are 1-based and count characters.
#[derive(Debug, Default)]
pub(super) struct ColumnMap {
    lines: BTreeMap<usize, Vec<Shift>>,
}

#[derive(Debug, Clone, Copy)]
struct Shift {
    expanded_start: usize,
    expanded_len: usize,
    original_start: usize,
    original_len: usize,
}

impl ColumnMap {
    /// The original column of `column` on `line` of the expanded text.
    pub fn original_column(&self, line: usize, column: usize) -> usize {
        let Some(shifts) = self.lines.get(&line) else {
            return column;
        };
        let mut result = column;
        for shift in shifts {
            if column < shift.expanded_start {
                break;
            }
            if column < shift.expanded_start + shift.expanded_len {
                return shift.original_start;
            }
            result = column + (shift.original_start + shift.original_len)
                - (shift.expanded_start + shift.expanded_len);
        }
        result
    }
}

/// Expands every reference in `text`, looking names up with `env`.
pub(super) fn expand(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Expanded {
    let mut out = String::with_capacity(text.len());
    let mut problems = Vec::new();
    let mut columns = ColumnMap::default();
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        if line.trim_start().starts_with('#') {
            out.push_str(line);
            continue;
        }
        let shifts = expand_line(line, line_no, env, &mut out, &mut problems);
        if !shifts.is_empty() {
            columns.lines.insert(line_no, shifts);
        }
    }
    Expanded {
        text: out,
        problems,
        columns,
    }
}

fn expand_line(
    line: &str,
    line_no: usize,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut String,
    problems: &mut Vec<ExpandProblem>,
) -> Vec<Shift> {
    let mut shifts = Vec::new();
    let mut rest = line;
    let mut original_col = 1;
    let mut expanded_col = 1;
    while let Some(dollar) = rest.find('$') {
        let (plain, tail) = rest.split_at(dollar);
        out.push_str(plain);
        let plain_chars = plain.chars().count();
        original_col += plain_chars;
        expanded_col += plain_chars;

        let (consumed, produced) = if tail.starts_with("$${") {
            ("$${", "${".to_owned())
        } else if tail.starts_with("${") {
            let Some(close) = tail.find('}') else {
                problems.push(ExpandProblem {
                    line: line_no,
                    column: original_col,
                    expanded_column: expanded_col,
                    message: "unterminated `${` (a reference must end with `}` on the same \
                              line; write `$${` for a literal `${`)"
                        .to_owned(),
                });
                out.push_str(tail);
                return shifts;
            };
            let reference = &tail[..=close];
            match resolve(&tail[2..close], env) {
                Ok(value) => (reference, value),
                Err(message) => {
                    problems.push(ExpandProblem {
                        line: line_no,
                        column: original_col,
                        expanded_column: expanded_col,
                        message,
                    });
                    (reference, reference.to_owned())
                }
            }
        } else {
            ("$", "$".to_owned())
        };
        out.push_str(&produced);
        let original_len = consumed.chars().count();
        let expanded_len = produced.chars().count();
        if consumed != produced {
            shifts.push(Shift {
                expanded_start: expanded_col,
                expanded_len,
                original_start: original_col,
                original_len,
            });
        }
        original_col += original_len;
        expanded_col += expanded_len;
        rest = &tail[consumed.len()..];
    }
    out.push_str(rest);
    shifts
}

/// Resolves the inside of `${...}`.
fn resolve(inner: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let (name, default) = match inner.split_once(":-") {
        Some((name, default)) => (name, Some(default)),
        None => (inner, None),
    };
    if !is_valid_name(name) {
        return Err(format!(
            "invalid reference `${{{inner}}}`: expected `${{NAME}}` or `${{NAME:-default}}` \
             with NAME made of letters, digits and `_`"
        ));
    }
    let value = match (env(name), default) {
        (Some(value), Some(default)) if value.is_empty() => default.to_owned(),
        (Some(value), _) => value,
        (None, Some(default)) => default.to_owned(),
        (None, None) => {
            return Err(format!(
                "environment variable {name} is not set (use `${{{name}:-default}}` \
                 to give a default)"
            ));
        }
    };
    if value.contains(['\n', '\r']) {
        return Err(format!(
            "environment variable {name} contains a line break, which config values cannot hold"
        ));
    }
    Ok(value)
}

fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SET" => Some("value".to_owned()),
            "EMPTY" => Some(String::new()),
            "LONG" => Some("a-much-longer-value".to_owned()),
            "MULTI" => Some("one\ntwo".to_owned()),
            _ => None,
        }
    }

    fn run(text: &str) -> Expanded {
        expand(text, &env)
    }

    #[test]
    fn set_variable_is_substituted() {
        let expanded = run("a: ${SET}\nb: x${SET}y\n");
        assert_eq!(expanded.text, "a: value\nb: xvaluey\n");
        assert!(expanded.problems.is_empty());
    }

    #[test]
    fn default_applies_when_unset_or_empty() {
        let expanded =
            run("a: ${UNSET:-dflt}\nb: ${EMPTY:-dflt}\nc: ${SET:-dflt}\nd: ${UNSET:-}\n");
        assert_eq!(expanded.text, "a: dflt\nb: dflt\nc: value\nd: \n");
        assert!(expanded.problems.is_empty());
    }

    #[test]
    fn empty_value_without_default_is_kept_empty() {
        let expanded = run("a: '${EMPTY}'\n");
        assert_eq!(expanded.text, "a: ''\n");
        assert!(expanded.problems.is_empty());
    }

    #[test]
    fn unset_without_default_is_a_located_problem() {
        let expanded = run("a: 1\nb: ${SET} and ${NOPE}\n");
        assert_eq!(
            expanded.problems,
            vec![ExpandProblem {
                line: 2,
                column: 15,
                expanded_column: 14,
                message: "environment variable NOPE is not set (use `${NOPE:-default}` to \
                          give a default)"
                    .to_owned(),
            }]
        );
        // The failed reference stays as written.
        assert_eq!(expanded.text, "a: 1\nb: value and ${NOPE}\n");
    }

    #[test]
    fn dollar_dollar_brace_is_a_literal() {
        let expanded = run("a: $${SET} $$ $x ${SET}$\n");
        assert_eq!(expanded.text, "a: ${SET} $$ $x value$\n");
        assert!(expanded.problems.is_empty());
    }

    #[test]
    fn malformed_references_are_problems() {
        let expanded = run("a: ${SET\nb: ${1X}\nc: ${A B}\nd: ${}\n");
        let lines: Vec<(usize, usize)> = expanded
            .problems
            .iter()
            .map(|p| (p.line, p.column))
            .collect();
        assert_eq!(lines, vec![(1, 4), (2, 4), (3, 4), (4, 4)]);
        assert!(expanded.problems[0].message.contains("unterminated"));
        assert!(
            expanded.problems[1]
                .message
                .contains("invalid reference `${1X}`")
        );
        assert_eq!(expanded.text, "a: ${SET\nb: ${1X}\nc: ${A B}\nd: ${}\n");
    }

    #[test]
    fn line_breaks_in_values_are_rejected() {
        let expanded = run("a: ${MULTI}\n");
        assert_eq!(expanded.problems.len(), 1);
        assert!(expanded.problems[0].message.contains("line break"));
        assert_eq!(expanded.text.lines().count(), 1);
    }

    #[test]
    fn full_line_comments_are_not_expanded() {
        let expanded = run("  # ${NOPE}\na: 1 # ${SET}\n");
        assert_eq!(expanded.text, "  # ${NOPE}\na: 1 # value\n");
        assert!(expanded.problems.is_empty());
    }

    #[test]
    fn columns_map_back_to_the_original() {
        // original: `k: ${SET}-x ${LONG} y` ; expanded: `k: value-x a-much-longer-value y`
        let expanded = run("k: ${SET}-x ${LONG} y\nnext: 1\n");
        assert_eq!(expanded.text, "k: value-x a-much-longer-value y\nnext: 1\n");
        let map = &expanded.columns;
        assert_eq!(map.original_column(1, 1), 1);
        assert_eq!(map.original_column(1, 4), 4); // start of `value` -> `$`
        assert_eq!(map.original_column(1, 8), 4); // inside `value`
        assert_eq!(map.original_column(1, 9), 10); // `-`
        assert_eq!(map.original_column(1, 12), 13); // start of the long value
        assert_eq!(map.original_column(1, 31), 20); // the space before `y`
        assert_eq!(map.original_column(1, 32), 21); // `y`
        assert_eq!(map.original_column(2, 7), 7); // untouched line
    }

    #[test]
    fn columns_after_an_empty_value() {
        let expanded = run("k: ${EMPTY}x\n");
        assert_eq!(expanded.text, "k: x\n");
        assert_eq!(expanded.columns.original_column(1, 4), 12);
    }

    #[test]
    fn non_ascii_columns_count_characters() {
        let expanded = run("é: ${SET} ü\n");
        assert_eq!(expanded.text, "é: value ü\n");
        assert_eq!(expanded.columns.original_column(1, 10), 11);
    }
}
