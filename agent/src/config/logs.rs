//! `logs:`: what to tail and how to split it into records (multiline rules and
//! their selectors), checked and converted.

use std::collections::BTreeMap;
use std::time::Duration;

use super::raw::{RawLogs, RawMultiline, RawMultilineRule, RawParser, RawPodRef, Spanned};
use serde_saphyr::Location;

use super::validate::{
    Context, KIB, MIB, Problems, file_globs, glob, in_range, path, required, size,
};
use super::{LogsConfig, MultilineRule, MultilineSelector, PodRef, ReadFrom};

pub(super) fn convert_logs(
    raw: RawLogs,
    context: &Context<'_>,
    problems: &mut Problems<'_>,
) -> LogsConfig {
    let RawLogs {
        containers_dir,
        pods_dir,
        include,
        exclude,
        read_from,
        max_record_bytes,
        read_buffer_bytes,
        poll_interval_ms,
        rescan_interval_secs,
        rotate_wait_secs,
        eof_flush_ms,
        self_pod,
        multiline,
        multiline_rules,
        parsers,
    } = raw;
    if include.value.is_empty() {
        problems.at(
            include.referenced,
            "logs.include",
            "must list at least one glob, or nothing is tailed",
        );
    }
    let include = file_globs(&include.value, "logs.include", problems);
    let exclude = file_globs(&exclude, "logs.exclude", problems);
    let read_from = match read_from.value.as_str() {
        "beginning" => ReadFrom::Beginning,
        "end" => ReadFrom::End,
        other => {
            problems.at(
                read_from.referenced,
                "logs.read_from",
                format!("must be `beginning` or `end`, got `{other}`"),
            );
            ReadFrom::Beginning
        }
    };
    let exclude_self = match self_pod {
        None => match (
            context.env_non_empty("POD_NAMESPACE"),
            context.env_non_empty("POD_NAME"),
        ) {
            (Some(namespace), Some(name)) => Some(PodRef { namespace, name }),
            _ => None,
        },
        Some(Spanned { value: None, .. }) => None,
        Some(Spanned {
            value: Some(RawPodRef { namespace, name }),
            referenced,
            ..
        }) => Some(PodRef {
            namespace: required(namespace, referenced, "logs.self_pod.namespace", problems),
            name: required(name, referenced, "logs.self_pod.name", problems),
        }),
    };
    let rules = convert_multiline_rules(multiline_rules, problems);
    let multiline = multiline
        .into_iter()
        .enumerate()
        .filter_map(|(index, selector)| convert_multiline(index, selector, &rules, problems))
        .collect();
    let containers_dir = path(&containers_dir, "logs.containers_dir", context, problems);
    let pods_dir = match pods_dir {
        Some(dir) => path(&dir, "logs.pods_dir", context, problems),
        None => containers_dir.with_file_name("pods"),
    };
    LogsConfig {
        containers_dir,
        pods_dir,
        include,
        exclude,
        read_from,
        max_record_bytes: size(
            &max_record_bytes,
            "logs.max_record_bytes",
            KIB..=1_048_550,
            problems,
        ),
        read_buffer_bytes: size(
            &read_buffer_bytes,
            "logs.read_buffer_bytes",
            4 * KIB..=16 * MIB,
            problems,
        ),
        poll_interval: Duration::from_millis(in_range(
            &poll_interval_ms,
            "logs.poll_interval_ms",
            10..=10_000,
            problems,
        )),
        rescan_interval: Duration::from_secs(in_range(
            &rescan_interval_secs,
            "logs.rescan_interval_secs",
            1..=3600,
            problems,
        )),
        rotate_wait: Duration::from_secs(in_range(
            &rotate_wait_secs,
            "logs.rotate_wait_secs",
            1..=3600,
            problems,
        )),
        eof_flush: Duration::from_millis(in_range(
            &eof_flush_ms,
            "logs.eof_flush_ms",
            1..=600_000,
            problems,
        )),
        exclude_self,
        multiline,
        multiline_rules: rules,
        parsers: convert_parsers(parsers, problems),
    }
}

/// `logs.parsers`, by name. Entries with problems are left out.
fn convert_parsers(
    raw: Vec<Spanned<RawParser>>,
    problems: &mut Problems<'_>,
) -> BTreeMap<String, regex::bytes::Regex> {
    let mut parsers = BTreeMap::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let prefix = format!("logs.parsers[{index}]");
        let RawParser { name, regex } = entry.value;
        let name = match name {
            None => {
                problems.at(entry.referenced, &format!("{prefix}.name"), "is required");
                None
            }
            Some(name) if name.value.is_empty() => {
                problems.at(
                    name.referenced,
                    &format!("{prefix}.name"),
                    "must not be empty",
                );
                None
            }
            Some(name) if parsers.contains_key(&name.value) => {
                problems.at(
                    name.referenced,
                    &format!("{prefix}.name"),
                    format!("duplicate parser name `{}`", name.value),
                );
                None
            }
            Some(name) => Some(name.value),
        };
        let regex = match regex {
            None => {
                problems.at(entry.referenced, &format!("{prefix}.regex"), "is required");
                None
            }
            Some(pattern) => match regex::bytes::Regex::new(&pattern.value) {
                Ok(re) if re.capture_names().flatten().next().is_none() => {
                    problems.at(
                        pattern.referenced,
                        &format!("{prefix}.regex"),
                        "has no named capture group (`(?P<name>...)`); the groups become the \
                         fields of `log_processed`",
                    );
                    None
                }
                Ok(re) => Some(re),
                Err(err) => {
                    problems.at(
                        pattern.referenced,
                        &format!("{prefix}.regex"),
                        format!("invalid regex `{}`: {}", pattern.value, regex_reason(&err)),
                    );
                    None
                }
            },
        };
        if let (Some(name), Some(regex)) = (name, regex) {
            parsers.insert(name, regex);
        }
    }
    parsers
}

/// The names usable in `logs.multiline[].rule` without a `multiline_rules` entry.
const BUILTIN_RULES: [&str; 3] = ["java", "python", "go"];

/// `logs.multiline_rules`, by name. Entries with problems are left out.
fn convert_multiline_rules(
    raw: Vec<Spanned<RawMultilineRule>>,
    problems: &mut Problems<'_>,
) -> BTreeMap<String, regex::bytes::Regex> {
    let mut rules = BTreeMap::new();
    let mut first_seen: BTreeMap<String, Location> = BTreeMap::new();
    for (index, entry) in raw.into_iter().enumerate() {
        let prefix = format!("logs.multiline_rules[{index}]");
        let RawMultilineRule {
            name,
            start_pattern,
        } = entry.value;
        let name = match name {
            None => {
                problems.at(entry.referenced, &format!("{prefix}.name"), "is required");
                None
            }
            Some(name) => {
                let path = format!("{prefix}.name");
                if name.value.is_empty() {
                    problems.at(name.referenced, &path, "must not be empty");
                    None
                } else if BUILTIN_RULES.contains(&name.value.as_str()) {
                    problems.at(
                        name.referenced,
                        &path,
                        format!("`{}` is a built-in rule; choose another name", name.value),
                    );
                    None
                } else if let Some(first) = first_seen.get(&name.value) {
                    let first = match first.line() {
                        0 => String::new(),
                        line => format!(" (first defined on line {line})"),
                    };
                    problems.at(
                        name.referenced,
                        &path,
                        format!("duplicate rule name `{}`{first}", name.value),
                    );
                    None
                } else {
                    first_seen.insert(name.value.clone(), name.referenced);
                    Some(name.value)
                }
            }
        };
        let pattern = match start_pattern {
            None => {
                problems.at(
                    entry.referenced,
                    &format!("{prefix}.start_pattern"),
                    "is required",
                );
                None
            }
            Some(pattern) => match regex::bytes::Regex::new(&pattern.value) {
                Ok(regex) => Some(regex),
                Err(err) => {
                    problems.at(
                        pattern.referenced,
                        &format!("{prefix}.start_pattern"),
                        format!("invalid regex `{}`: {}", pattern.value, regex_reason(&err)),
                    );
                    None
                }
            },
        };
        if let (Some(name), Some(pattern)) = (name, pattern) {
            rules.insert(name, pattern);
        }
    }
    rules
}

/// One `logs.multiline` entry; `None` when it has problems.
fn convert_multiline(
    index: usize,
    entry: Spanned<RawMultiline>,
    rules: &BTreeMap<String, regex::bytes::Regex>,
    problems: &mut Problems<'_>,
) -> Option<MultilineSelector> {
    let prefix = format!("logs.multiline[{index}]");
    let RawMultiline {
        namespace,
        pod,
        container,
        rule,
        flush_timeout_ms,
    } = entry.value;
    let namespace = glob(&namespace, &format!("{prefix}.namespace"), problems);
    let pod = glob(&pod, &format!("{prefix}.pod"), problems);
    let container = glob(&container, &format!("{prefix}.container"), problems);
    let flush_timeout = Duration::from_millis(in_range(
        &flush_timeout_ms,
        &format!("{prefix}.flush_timeout_ms"),
        1..=600_000,
        problems,
    ));
    let rule_path = format!("{prefix}.rule");
    let rule = match rule {
        None => {
            let choices = rule_choices(rules);
            problems.at(
                entry.referenced,
                &rule_path,
                format!("is required ({choices})"),
            );
            return None;
        }
        Some(rule) => {
            let resolved = named_rule(&rule.value, rules);
            match resolved {
                Some(resolved) => resolved,
                None => {
                    let choices = rule_choices(rules);
                    problems.at(
                        rule.referenced,
                        &rule_path,
                        format!("unknown multiline rule `{}` ({choices})", rule.value),
                    );
                    return None;
                }
            }
        }
    };
    Some(MultilineSelector {
        namespace: namespace?.compile_matcher(),
        pod: pod?.compile_matcher(),
        container: container?.compile_matcher(),
        rule,
        flush_timeout,
    })
}

/// A built-in rule by name, or a `multiline_rules` entry.
pub(super) fn named_rule(
    name: &str,
    rules: &BTreeMap<String, regex::bytes::Regex>,
) -> Option<MultilineRule> {
    match name {
        "java" => Some(MultilineRule::Java),
        "python" => Some(MultilineRule::Python),
        "go" => Some(MultilineRule::Go),
        name => rules.get(name).cloned().map(MultilineRule::Custom),
    }
}

/// "expected java, python, go or a `logs.multiline_rules` name (a, b)".
fn rule_choices(rules: &BTreeMap<String, regex::bytes::Regex>) -> String {
    let mut choices = format!(
        "expected {} or a `logs.multiline_rules` name",
        BUILTIN_RULES.join(", ")
    );
    if !rules.is_empty() {
        let names: Vec<&str> = rules.keys().map(String::as_str).collect();
        choices.push_str(&format!(": {}", names.join(", ")));
    }
    choices
}

/// The one-line reason of a regex error (syntax errors render on several lines).
pub(super) fn regex_reason(err: &regex::Error) -> String {
    let text = err.to_string();
    text.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix("error: "))
        .map_or_else(|| text.replace('\n', " "), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_reason_is_one_line() {
        // Built at run time: clippy rejects invalid regex literals.
        let pattern = ["(", "unclosed"].concat();
        let err = regex::bytes::Regex::new(&pattern).unwrap_err();
        assert_eq!(regex_reason(&err), "unclosed group");
    }
}
