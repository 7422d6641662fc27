//! From config text to [`Config`]: parsing into the raw structs, then checking
//! and converting every value, collecting each problem with its location.
//!
//! Main pieces: [`parse`] (YAML → raw → [`Config`]), [`Problems`] (the collector,
//! which maps positions in the expanded text back to the file), and the checks of
//! single values (`in_range`, `size`, `path`, globs) the sections use; each section
//! converts in its own file (`logs`, `kubernetes`, `cloudwatch`, `sections` for the
//! small ones). Conversion destructures every raw struct exhaustively, so a new raw
//! field cannot be silently ignored.
//!
//! Conversion goes on after a bad value (with a placeholder in its place) so
//! that every problem is found; the caller discards the result when any
//! problem was recorded.

use std::path::{Path, PathBuf};
use std::time::Duration;

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_saphyr::{Error as YamlError, Location};

use super::expand::{ColumnMap, ExpandProblem, Expanded};
use super::raw::{RawConfig, Spanned};
use super::sections::{convert_output, convert_pipeline, convert_telemetry};
use super::tree::{self, Segment, Tree};
use super::{Config, Problem};

pub(super) const KIB: u64 = 1024;
pub(super) const MIB: u64 = 1024 * KIB;

/// What conversion needs besides the text.
pub(super) struct Context<'a> {
    /// Relative paths are resolved against this directory.
    pub base_dir: &'a Path,
    pub env: &'a dyn Fn(&str) -> Option<String>,
    pub hostname: &'a dyn Fn() -> Option<String>,
}

impl Context<'_> {
    /// An environment variable, treating empty as unset.
    pub(super) fn env_non_empty(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|value| !value.is_empty())
    }
}

/// How a problem relates to failed `${...}` references.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A failed reference itself.
    Expansion,
    /// Located at a key; cannot be caused by the value after it.
    UnknownKey,
    /// Anything else; dropped when on the same line as a failed reference,
    /// whose text was left as written and so is likely the cause.
    Other,
}

/// Collects problems, mapping expanded-text positions to the original file.
pub(super) struct Problems<'a> {
    columns: &'a ColumnMap,
    found: Vec<(Kind, Problem)>,
}

impl<'a> Problems<'a> {
    pub fn new(columns: &'a ColumnMap) -> Self {
        Problems {
            columns,
            found: Vec::new(),
        }
    }

    /// A failed `${...}` reference, under the key path of the value holding it.
    fn expansion(&mut self, problem: &ExpandProblem, path: String) {
        self.found.push((
            Kind::Expansion,
            Problem {
                line: Some(problem.line),
                column: Some(problem.column),
                path,
                message: problem.message.clone(),
            },
        ));
    }

    /// A problem at `location` (in the expanded text); unknown locations are
    /// recorded without line and column.
    pub(super) fn at(&mut self, location: Location, path: &str, message: impl Into<String>) {
        self.push(Kind::Other, Some(location), path, message.into());
    }

    /// A problem with no place in the file.
    pub(super) fn unlocated(&mut self, path: &str, message: impl Into<String>) {
        self.push(Kind::Other, None, path, message.into());
    }

    fn push(&mut self, kind: Kind, location: Option<Location>, path: &str, message: String) {
        let position = location
            .filter(|location| *location != Location::UNKNOWN && location.line() > 0)
            .map(|location| {
                let line = usize::try_from(location.line()).unwrap_or(usize::MAX);
                let column = usize::try_from(location.column()).unwrap_or(usize::MAX);
                (line, self.columns.original_column(line, column))
            });
        self.found.push((
            kind,
            Problem {
                line: position.map(|(line, _)| line),
                column: position.map(|(_, column)| column),
                path: path.to_owned(),
                message,
            },
        ));
    }

    /// The problems to report, in file order (unlocated ones last).
    pub fn finish(self) -> Vec<Problem> {
        let failed_lines: Vec<Option<usize>> = self
            .found
            .iter()
            .filter(|(kind, _)| *kind == Kind::Expansion)
            .map(|(_, problem)| problem.line)
            .collect();
        let mut problems: Vec<Problem> = self
            .found
            .into_iter()
            .filter(|(kind, problem)| {
                *kind != Kind::Other
                    || problem.line.is_none()
                    || !failed_lines.contains(&problem.line)
            })
            .map(|(_, problem)| problem)
            .collect();
        problems.sort_by_key(|problem| (problem.line.is_none(), problem.line, problem.column));
        problems
    }
}

/// Parses the expanded text and converts it, recording the failed references
/// of the expansion too. `None` when parsing stopped on a syntax or type error.
pub(super) fn parse(
    expanded: &Expanded,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> Option<Config> {
    let text = expanded.text.as_str();
    let tree = Tree::parse(text);
    for problem in &expanded.problems {
        let found = tree.as_ref().ok().and_then(|tree| {
            tree.node_at(
                u64::try_from(problem.line).unwrap_or(u64::MAX),
                u64::try_from(problem.expanded_column).unwrap_or(u64::MAX),
            )
        });
        problems.expansion(problem, found.map(|found| found.path).unwrap_or_default());
    }
    let tree = match tree {
        Ok(tree) => tree,
        Err(err) => {
            yaml_error(&err, None, problems);
            return None;
        }
    };
    let mut unknown: Vec<Vec<Segment>> = Vec::new();
    let raw: Result<RawConfig, YamlError> = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_ignored::deserialize(de, |path| unknown.extend(tree::ignored_path(&path)))
    });
    for segments in &unknown {
        let location = tree.key_location(segments);
        let key = match segments.last() {
            Some(Segment::Key(key)) => format!("`{key}`"),
            Some(Segment::Index(_)) | None => "entry".to_owned(),
        };
        problems.push(
            Kind::UnknownKey,
            location,
            &tree::render_path(segments),
            format!("unknown key {key}"),
        );
    }
    match raw {
        Ok(raw) => convert(raw, context, problems),
        Err(err) => {
            yaml_error(&err, Some(&tree), problems);
            None
        }
    }
}

/// Records a serde-saphyr error, with the key path and what was written when
/// the document parsed as YAML (`tree`).
fn yaml_error(err: &YamlError, tree: Option<&Tree<'_>>, problems: &mut Problems<'_>) {
    let mut inner = err;
    while let YamlError::AliasError { error, .. } | YamlError::WithSnippet { error, .. } = inner {
        inner = error;
    }
    let location = err.location();
    let found = match (tree, location) {
        (Some(tree), Some(location)) => tree.node_at(location.line(), location.column()),
        _ => None,
    };
    let expected = match inner {
        YamlError::InvalidScalar { ty, .. } => Some(match *ty {
            "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a non-negative integer".to_owned(),
            "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "an integer".to_owned(),
            "f32" | "f64" => "a number".to_owned(),
            "bool" => "`true` or `false`".to_owned(),
            other => other.to_owned(),
        }),
        YamlError::Unexpected { expected, .. } => Some(match *expected {
            "string scalar" => "a single value".to_owned(),
            "sequence start" => "a list".to_owned(),
            "mapping start" => "a mapping".to_owned(),
            other => other.to_owned(),
        }),
        YamlError::NullIntoString { .. } => Some("a string".to_owned()),
        YamlError::SerdeInvalidType { expected, .. } => Some(expected.clone()),
        _ => None,
    };
    let message = match (expected, &found) {
        (Some(expected), Some(found)) => format!("expected {expected}, found {}", found.written),
        (Some(expected), None) => format!("expected {expected}"),
        (None, _) => {
            use serde_saphyr::MessageFormatter as _;
            serde_saphyr::UserMessageFormatter
                .format_message(inner)
                .into_owned()
        }
    };
    let path = found.map(|found| found.path).unwrap_or_default();
    problems.push(Kind::Other, location, &path, message);
}

/// The checked conversion of the whole file; `None` when a value had no
/// usable placeholder (problems are recorded either way).
fn convert(raw: RawConfig, context: &Context<'_>, problems: &mut Problems<'_>) -> Option<Config> {
    let RawConfig {
        cluster,
        node_name,
        state_dir,
        shutdown_timeout_secs,
        logs,
        pipeline,
        output,
        telemetry,
        kubernetes,
        metrics,
    } = raw;
    let cluster = match cluster {
        Some(cluster) => non_empty(&cluster, "cluster", problems),
        None => context.env_non_empty("CLUSTER_NAME").unwrap_or_else(|| {
            problems.unlocated(
                "cluster",
                "is required: set `cluster:` or the CLUSTER_NAME environment variable",
            );
            String::new()
        }),
    };
    let node_name = match node_name {
        Some(node_name) => non_empty(&node_name, "node_name", problems),
        None => context
            .env_non_empty("NODE_NAME")
            .or_else(|| (context.hostname)())
            .unwrap_or_else(|| "unknown".to_owned()),
    };
    let state_dir = path(&state_dir, "state_dir", context, problems);
    let shutdown_timeout = Duration::from_secs(in_range(
        &shutdown_timeout_secs,
        "shutdown_timeout_secs",
        1..=3600,
        problems,
    ));
    let logs = super::logs::convert_logs(logs.unwrap_or_default(), context, problems);
    let pipeline = convert_pipeline(pipeline.unwrap_or_default(), problems);
    let output = convert_output(output.unwrap_or_default(), &state_dir, context, problems);
    let telemetry = convert_telemetry(telemetry.unwrap_or_default(), problems);
    let kubernetes = super::kubernetes::convert(kubernetes.unwrap_or_default(), context, problems);
    let metrics = super::metrics::convert(metrics, &cluster, &state_dir, context, problems);
    Some(Config {
        cluster,
        node_name,
        state_dir,
        shutdown_timeout,
        logs,
        pipeline,
        output: output?,
        telemetry,
        kubernetes,
        metrics,
    })
}

/// The value of a string that must not be empty.
pub(super) fn non_empty(
    value: &Spanned<String>,
    path: &str,
    problems: &mut Problems<'_>,
) -> String {
    if value.value.trim().is_empty() {
        problems.at(value.referenced, path, "must not be empty");
    }
    value.value.clone()
}

/// A required, non-empty string of a mapping at `parent`.
pub(super) fn required(
    value: Option<Spanned<String>>,
    parent: Location,
    path: &str,
    problems: &mut Problems<'_>,
) -> String {
    match value {
        Some(value) => non_empty(&value, path, problems),
        None => {
            problems.at(parent, path, "is required");
            String::new()
        }
    }
}

/// A path, resolved against the config file's directory when relative.
pub(super) fn path(
    value: &Spanned<String>,
    key: &str,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> PathBuf {
    if value.value.is_empty() {
        problems.at(value.referenced, key, "must not be empty");
    }
    // `components()` drops `.` segments and repeated separators.
    context.base_dir.join(&value.value).components().collect()
}

/// A number checked against `range`.
pub(super) fn in_range(
    value: &Spanned<u64>,
    path: &str,
    range: std::ops::RangeInclusive<u64>,
    problems: &mut Problems<'_>,
) -> u64 {
    if !range.contains(&value.value) {
        problems.at(
            value.referenced,
            path,
            format!(
                "must be between {} and {}, got {}",
                range.start(),
                range.end(),
                value.value
            ),
        );
    }
    value.value
}

/// [`in_range`] for sizes and counts.
pub(super) fn size(
    value: &Spanned<u64>,
    path: &str,
    range: std::ops::RangeInclusive<u64>,
    problems: &mut Problems<'_>,
) -> usize {
    usize::try_from(in_range(value, path, range, problems)).unwrap_or(usize::MAX)
}

pub(super) fn glob(
    value: &Spanned<String>,
    path: &str,
    problems: &mut Problems<'_>,
) -> Option<Glob> {
    match Glob::new(&value.value) {
        Ok(glob) => Some(glob),
        Err(err) => {
            problems.at(
                value.referenced,
                path,
                format!("invalid glob `{}`: {}", value.value, err.kind()),
            );
            None
        }
    }
}

/// Globs matched against file names: no `/`.
pub(super) fn file_globs(
    values: &[Spanned<String>],
    path: &str,
    problems: &mut Problems<'_>,
) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for (index, value) in values.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        if value.value.contains('/') {
            problems.at(
                value.referenced,
                &item_path,
                format!(
                    "`{}` contains `/`, but these globs match file names in \
                     logs.containers_dir, not paths",
                    value.value
                ),
            );
        } else if let Some(glob) = glob(value, &item_path, problems) {
            builder.add(glob);
        }
    }
    builder.build().unwrap_or_else(|err| {
        problems.unlocated(path, format!("cannot compile the globs: {err}"));
        GlobSet::empty()
    })
}
