//! `metric_relabel_configs` (of `metrics.scrape`, and of its pods, kubelet and each
//! static target): relabeling rules as written, checked into
//! [`Rule`]s with Prometheus's semantics.

use super::logs::regex_reason;
use super::raw::Spanned;
use super::scrape::RawRelabel;
use super::validate::Problems;
use crate::metrics::relabel::{self, Action, Rule, valid_label_name};

/// The rules of the list at `key` (e.g. `metrics.scrape.metric_relabel_configs`); a
/// bad one is reported and left out.
pub(super) fn convert_rules(
    key: &str,
    raw: Vec<Spanned<RawRelabel>>,
    problems: &mut Problems<'_>,
) -> Vec<Rule> {
    raw.into_iter()
        .enumerate()
        .filter_map(|(i, r)| convert_relabel(&format!("{key}[{i}]"), r, problems))
        .collect()
}

fn convert_relabel(
    p: &str,
    entry: Spanned<RawRelabel>,
    problems: &mut Problems<'_>,
) -> Option<Rule> {
    let RawRelabel {
        source_labels,
        separator,
        regex,
        target_label,
        replacement,
        action,
    } = entry.value;
    let mut ok = true;
    let action_name = action.value.clone();
    let action = match Action::parse(&action.value) {
        Some(a) => Some(a),
        None => {
            let names: Vec<&str> = Action::NAMES.iter().map(|(n, _)| *n).collect();
            problems.at(
                action.referenced,
                &format!("{p}.action"),
                format!(
                    "must be one of {}, got `{}`",
                    names.join(", "),
                    action.value
                ),
            );
            None
        }
    };
    for (i, s) in source_labels.iter().enumerate() {
        if !valid_label_name(&s.value) {
            problems.at(
                s.referenced,
                &format!("{p}.source_labels[{i}]"),
                format!("`{}` is not a label name", s.value),
            );
            ok = false;
        }
    }
    let compiled = match relabel::anchored(&regex.value) {
        Ok(r) => Some(r),
        Err(e) => {
            problems.at(
                regex.referenced,
                &format!("{p}.regex"),
                format!("invalid regex `{}`: {}", regex.value, regex_reason(&e)),
            );
            None
        }
    };
    let by_name = matches!(action, Some(Action::LabelDrop | Action::LabelKeep));
    let target = match (action, target_label) {
        (Some(Action::Replace), None) => {
            problems.at(
                entry.referenced,
                &format!("{p}.target_label"),
                "is required for `replace`",
            );
            ok = false;
            String::new()
        }
        (Some(Action::Replace), Some(t)) => {
            // It may hold `$1`-style references, expanded per series.
            if t.value.is_empty() || (!t.value.contains('$') && !valid_label_name(&t.value)) {
                problems.at(
                    t.referenced,
                    &format!("{p}.target_label"),
                    format!("`{}` is not a label name", t.value),
                );
                ok = false;
            }
            t.value
        }
        (_, Some(t)) => {
            problems.at(
                t.referenced,
                &format!("{p}.target_label"),
                format!("is only for `replace`, not `{action_name}`"),
            );
            ok = false;
            String::new()
        }
        (_, None) => String::new(),
    };
    if by_name && !source_labels.is_empty() {
        problems.at(
            entry.referenced,
            &format!("{p}.source_labels"),
            format!("`{action_name}` matches label names: it takes no source_labels"),
        );
        ok = false;
    }
    if !by_name && action.is_some() && source_labels.is_empty() && action != Some(Action::Replace) {
        problems.at(
            entry.referenced,
            &format!("{p}.source_labels"),
            format!("`{action_name}` needs source_labels"),
        );
        ok = false;
    }
    let rule = Rule {
        source_labels: source_labels.into_iter().map(|s| s.value).collect(),
        separator: separator.value,
        regex: compiled?,
        target_label: target,
        replacement: replacement.value,
        action: action?,
    };
    ok.then_some(rule)
}
