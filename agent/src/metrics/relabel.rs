//! Metric relabeling (`metrics.scrape.metric_relabel_configs`) with Prometheus's
//! semantics: each [`Rule`] reads the values of its source labels joined by its
//! separator and matches them against a fully anchored regex (`^(?:regex)$`, the
//! `regex` crate's RE2-like syntax), then `replace`s a label, `keep`s or `drop`s the
//! series, or `labeldrop`s / `labelkeep`s labels by name. `__name__` is a label like
//! the others.
//!
//! Rules run on a series' final labels (scraped labels, target labels added) once,
//! when the scrape loop first meets the series; the result is cached with it, so a
//! steady scrape relabels nothing.

use regex::Regex;

/// What a rule does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// `replace`: when the joined value matches, set `target_label` to the expanded
    /// `replacement` (an empty result deletes it).
    Replace,
    /// `keep`: drop the series unless the joined value matches.
    Keep,
    /// `drop`: drop the series when the joined value matches.
    Drop,
    /// `labeldrop`: delete every label whose name matches.
    LabelDrop,
    /// `labelkeep`: delete every label whose name does not match.
    LabelKeep,
}

impl Action {
    /// Every action with its config name.
    pub const NAMES: [(&'static str, Action); 5] = [
        ("replace", Action::Replace),
        ("keep", Action::Keep),
        ("drop", Action::Drop),
        ("labeldrop", Action::LabelDrop),
        ("labelkeep", Action::LabelKeep),
    ];

    /// The action called `name` in the config.
    pub fn parse(name: &str) -> Option<Action> {
        Self::NAMES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, action)| *action)
    }
}

/// One relabeling rule, checked.
#[derive(Clone, Debug)]
pub struct Rule {
    /// Labels whose values are joined (a missing label is an empty value).
    pub source_labels: Vec<String>,
    /// Joins the source values; default `;`.
    pub separator: String,
    /// Anchored at both ends; default `(.*)`.
    pub regex: Regex,
    /// The label `replace` sets (may hold `$1`-style references).
    pub target_label: String,
    /// What `replace` sets it to; default `$1`.
    pub replacement: String,
    /// What the rule does.
    pub action: Action,
}

/// The regex of a rule: `pattern` anchored at both ends, as Prometheus does.
pub fn anchored(pattern: &str) -> Result<Regex, regex::Error> {
    Regex::new(&format!("^(?:{pattern})$"))
}

/// Whether `name` is a valid label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Applies `rules` in order to `labels` (name, value pairs, names unique); false
/// when a rule dropped the series (the labels are then left half-relabeled).
pub fn apply(rules: &[Rule], labels: &mut Vec<(String, String)>) -> bool {
    rules.iter().all(|rule| rule.apply(labels))
}

impl Rule {
    fn apply(&self, labels: &mut Vec<(String, String)>) -> bool {
        match self.action {
            Action::Keep => self.regex.is_match(&self.joined(labels)),
            Action::Drop => !self.regex.is_match(&self.joined(labels)),
            Action::LabelDrop => {
                labels.retain(|(name, _)| !self.regex.is_match(name));
                true
            }
            Action::LabelKeep => {
                labels.retain(|(name, _)| self.regex.is_match(name));
                true
            }
            Action::Replace => {
                let value = self.joined(labels);
                let Some(captures) = self.regex.captures(&value) else {
                    return true;
                };
                let mut target = String::new();
                captures.expand(&self.target_label, &mut target);
                if !valid_label_name(&target) {
                    return true;
                }
                let mut replaced = String::new();
                captures.expand(&self.replacement, &mut replaced);
                let at = labels.iter().position(|(name, _)| *name == target);
                match (at, replaced.is_empty()) {
                    (Some(i), true) => {
                        labels.swap_remove(i);
                    }
                    (Some(i), false) => labels[i].1 = replaced,
                    (None, true) => {}
                    (None, false) => labels.push((target, replaced)),
                }
                true
            }
        }
    }

    /// The source labels' values joined by the separator.
    fn joined(&self, labels: &[(String, String)]) -> String {
        let mut out = String::new();
        for (i, source) in self.source_labels.iter().enumerate() {
            if i > 0 {
                out.push_str(&self.separator);
            }
            if let Some((_, value)) = labels.iter().find(|(name, _)| name == source) {
                out.push_str(value);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: &str, sources: &[&str], regex: &str) -> Rule {
        Rule {
            source_labels: sources.iter().map(|s| s.to_string()).collect(),
            separator: ";".into(),
            regex: anchored(regex).unwrap(),
            target_label: String::new(),
            replacement: "$1".into(),
            action: Action::parse(action).unwrap(),
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    fn sorted(mut l: Vec<(String, String)>) -> Vec<(String, String)> {
        l.sort();
        l
    }

    #[test]
    fn keep_and_drop_match_the_anchored_regex_on_joined_values() {
        let series = labels(&[("__name__", "go_gc_duration_seconds"), ("job", "api")]);
        let drop_go = rule("drop", &["__name__"], "go_.*");
        assert!(!apply(std::slice::from_ref(&drop_go), &mut series.clone()));
        // Anchored: `gc` alone does not match `go_gc_…`.
        let drop_gc = rule("drop", &["__name__"], "gc");
        assert!(apply(&[drop_gc], &mut series.clone()));
        let keep = rule("keep", &["job", "__name__"], "api;go_.*");
        assert!(apply(&[keep], &mut series.clone()));
        let keep_other = rule("keep", &["job"], "web");
        assert!(!apply(&[keep_other], &mut series.clone()));
        // A missing source label is an empty value.
        let keep_empty = rule("keep", &["nope"], "");
        assert!(apply(&[keep_empty], &mut series.clone()));
        // Rules run in order: a drop after a keep still drops.
        let keep_all = rule("keep", &["job"], ".*");
        assert!(!apply(&[keep_all, drop_go], &mut series.clone()));
    }

    #[test]
    fn replace_sets_expands_and_deletes() {
        let mut r = rule("replace", &["__name__", "code"], "http_(.*);(\\d)\\d\\d");
        r.target_label = "class".into();
        r.replacement = "${2}xx_$1".into();
        let mut l = labels(&[("__name__", "http_requests_total"), ("code", "503")]);
        assert!(apply(std::slice::from_ref(&r), &mut l));
        assert_eq!(
            sorted(l),
            labels(&[
                ("__name__", "http_requests_total"),
                ("class", "5xx_requests_total"),
                ("code", "503")
            ])
        );
        // No match: nothing changes.
        let mut l = labels(&[("__name__", "up")]);
        assert!(apply(std::slice::from_ref(&r), &mut l));
        assert_eq!(l, labels(&[("__name__", "up")]));
        // An empty result deletes the target label.
        let mut wipe = rule("replace", &["x"], ".*");
        wipe.target_label = "env".into();
        wipe.replacement = String::new();
        let mut l = labels(&[("__name__", "up"), ("env", "prod")]);
        assert!(apply(&[wipe], &mut l));
        assert_eq!(l, labels(&[("__name__", "up")]));
        // The target label may be built from the match; an invalid one is skipped.
        let mut named = rule("replace", &["k"], "(.*)");
        named.target_label = "tag_$1".into();
        named.replacement = "yes".into();
        let mut l = labels(&[("k", "blue")]);
        assert!(apply(std::slice::from_ref(&named), &mut l));
        assert_eq!(sorted(l), labels(&[("k", "blue"), ("tag_blue", "yes")]));
        let mut l = labels(&[("k", "not-valid")]);
        assert!(apply(&[named], &mut l));
        assert_eq!(l, labels(&[("k", "not-valid")]));
        // `__name__` can be rewritten like any label.
        let mut rename = rule("replace", &["__name__"], "old_(.*)");
        rename.target_label = "__name__".into();
        rename.replacement = "new_$1".into();
        let mut l = labels(&[("__name__", "old_total")]);
        assert!(apply(&[rename], &mut l));
        assert_eq!(l, labels(&[("__name__", "new_total")]));
    }

    #[test]
    fn labeldrop_and_labelkeep_go_by_name() {
        let all = labels(&[
            ("__name__", "m"),
            ("pod_template_hash", "abc"),
            ("pod", "p"),
            ("instance", "i"),
        ]);
        let mut l = all.clone();
        assert!(apply(&[rule("labeldrop", &[], "pod_.*")], &mut l));
        assert_eq!(
            l,
            labels(&[("__name__", "m"), ("pod", "p"), ("instance", "i")])
        );
        let mut l = all;
        assert!(apply(&[rule("labelkeep", &[], "__name__|pod")], &mut l));
        assert_eq!(l, labels(&[("__name__", "m"), ("pod", "p")]));
    }

    #[test]
    fn label_names() {
        for ok in ["a", "_", "job", "le", "A_1", "__name__"] {
            assert!(valid_label_name(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "a.b", "é", "a b"] {
            assert!(!valid_label_name(bad), "{bad}");
        }
        assert_eq!(Action::parse("labelkeep"), Some(Action::LabelKeep));
        assert_eq!(Action::parse("hashmod"), None);
    }
}
