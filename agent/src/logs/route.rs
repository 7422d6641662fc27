//! Log group / stream name templates.
//!
//! A [`Template`] is a string such as `/aws/containerinsights/{cluster}/application`
//! or `{pod}_{namespace}_{container}`, parsed once (at config load) into literal
//! parts and placeholders, then rendered for every container with [`Fields`].
//!
//! Placeholders: `{cluster}`, `{node}`, `{namespace}`, `{pod}`, `{container}`,
//! `{container_id}`, and `{label:<key>}` / `{annotation:<key>}` for the value of one
//! of the pod's labels or annotations (e.g. `{label:app.kubernetes.io/name}`). A
//! label or annotation the pod does not have, or any of them while the pod's
//! metadata is not known ([`Fields::labels`] / [`Fields::annotations`] are `None`),
//! renders as the empty string. `{{` and `}}` stand for literal braces. Anything
//! else between braces (an unknown name or prefix, an empty key, a key with
//! whitespace, control characters or braces), and any unbalanced brace, is a parse
//! error naming the offender and its position.
//!
//! What this module does not do: it does not sanitize rendered names for a
//! particular sink (CloudWatch's allowed characters and length limits are the
//! sink's business), and it does not cache rendered names.

use std::collections::BTreeMap;
use std::fmt;

/// The values a template can refer to, borrowed from the container being routed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Fields<'a> {
    /// `{cluster}`: the configured cluster name.
    pub cluster: &'a str,
    /// `{node}`: the node name.
    pub node: &'a str,
    /// `{namespace}`: the pod's namespace.
    pub namespace: &'a str,
    /// `{pod}`: the pod's name.
    pub pod: &'a str,
    /// `{container}`: the container's name.
    pub container: &'a str,
    /// `{container_id}`: the container runtime's ID.
    pub container_id: &'a str,
    /// `{label:<key>}`: the pod's labels; `None` when the pod's metadata is not known.
    pub labels: Option<&'a BTreeMap<String, String>>,
    /// `{annotation:<key>}`: the pod's annotations; `None` when the pod's metadata is
    /// not known.
    pub annotations: Option<&'a BTreeMap<String, String>>,
}

/// A parsed name template. Cheap to render; keeps its source text for messages.
#[derive(Clone, Debug)]
pub struct Template {
    source: String,
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(Placeholder),
}

/// One `{...}` placeholder. Prefixed placeholders (`{label:<key>}`) are variants
/// carrying their argument; see [`Placeholder::parse`].
#[derive(Clone, Debug, PartialEq, Eq)]
enum Placeholder {
    Cluster,
    Node,
    Namespace,
    Pod,
    Container,
    ContainerId,
    /// `{label:<key>}`.
    Label(String),
    /// `{annotation:<key>}`.
    Annotation(String),
}

/// The prefixed placeholders, as listed in error messages.
const PREFIXED: [&str; 2] = ["{label:<key>}", "{annotation:<key>}"];

/// Every simple placeholder with its spelling, used by parsing and by error messages.
const PLACEHOLDERS: [(&str, Placeholder); 6] = [
    ("cluster", Placeholder::Cluster),
    ("node", Placeholder::Node),
    ("namespace", Placeholder::Namespace),
    ("pod", Placeholder::Pod),
    ("container", Placeholder::Container),
    ("container_id", Placeholder::ContainerId),
];

impl Placeholder {
    /// Parses the text between the braces of the placeholder opened at character
    /// `pos` (1-based).
    fn parse(name: &str, pos: usize) -> Result<Placeholder, String> {
        if let Some((prefix, key)) = name.split_once(':') {
            let make = match prefix {
                "label" => Placeholder::Label,
                "annotation" => Placeholder::Annotation,
                _ => return Err(unknown(name, pos)),
            };
            return check_key(prefix, key, pos).map(|()| make(key.to_owned()));
        }
        PLACEHOLDERS
            .iter()
            .find(|(spelling, _)| *spelling == name)
            .map(|(_, placeholder)| placeholder.clone())
            .ok_or_else(|| unknown(name, pos))
    }

    fn value<'a>(&self, fields: &Fields<'a>) -> &'a str {
        let lookup = |map: Option<&'a BTreeMap<String, String>>, key: &str| {
            map.and_then(|map| map.get(key)).map_or("", String::as_str)
        };
        match self {
            Placeholder::Cluster => fields.cluster,
            Placeholder::Node => fields.node,
            Placeholder::Namespace => fields.namespace,
            Placeholder::Pod => fields.pod,
            Placeholder::Container => fields.container,
            Placeholder::ContainerId => fields.container_id,
            Placeholder::Label(key) => lookup(fields.labels, key),
            Placeholder::Annotation(key) => lookup(fields.annotations, key),
        }
    }
}

/// The error for a name that is no placeholder, listing the known ones.
fn unknown(name: &str, pos: usize) -> String {
    let known: Vec<String> = PLACEHOLDERS
        .iter()
        .map(|(spelling, _)| format!("{{{spelling}}}"))
        .chain(PREFIXED.iter().map(|p| (*p).to_owned()))
        .collect();
    format!(
        "unknown placeholder `{{{name}}}` at position {pos}; expected one of {}",
        known.join(", ")
    )
}

/// Checks the key of the placeholder `{<prefix>:<key>}` opened at `pos`.
fn check_key(prefix: &str, key: &str, pos: usize) -> Result<(), String> {
    let problem = if key.is_empty() {
        "an empty key"
    } else if key.chars().any(char::is_whitespace) {
        "whitespace in its key"
    } else if key.chars().any(char::is_control) {
        "a control character in its key"
    } else if key.contains(['{', '}']) {
        "a brace in its key"
    } else {
        return Ok(());
    };
    Err(format!(
        "placeholder `{{{prefix}:{key}}}` at position {pos} has {problem} \
         (write `{{{prefix}:<key>}}`)"
    ))
}

impl Template {
    /// Parses a template. The error names the offending placeholder or brace and
    /// its character position (1-based) within `s`.
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = s.char_indices().enumerate().peekable();
        while let Some((pos, (_, c))) = chars.next() {
            match c {
                '{' if chars.peek().is_some_and(|&(_, (_, next))| next == '{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek().is_some_and(|&(_, (_, next))| next == '}') => {
                    chars.next();
                    literal.push('}');
                }
                '}' => {
                    return Err(format!(
                        "unmatched `}}` at position {} (write `}}}}` for a literal brace)",
                        pos + 1
                    ));
                }
                '{' => {
                    let mut name = String::new();
                    let mut closed = false;
                    for (_, (_, inner)) in chars.by_ref() {
                        match inner {
                            '}' => {
                                closed = true;
                                break;
                            }
                            '{' => {
                                return Err(format!(
                                    "`{{` inside the placeholder opened at position {} \
                                     (write `{{{{` for a literal brace)",
                                    pos + 1
                                ));
                            }
                            other => name.push(other),
                        }
                    }
                    if !closed {
                        return Err(format!(
                            "unclosed `{{` at position {} (write `{{{{` for a literal brace)",
                            pos + 1
                        ));
                    }
                    let placeholder = Placeholder::parse(&name, pos + 1)?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(placeholder));
                }
                other => literal.push(other),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template {
            source: s.to_owned(),
            parts,
        })
    }

    /// Renders the template with `fields`. Values are inserted verbatim.
    pub fn render(&self, fields: &Fields<'_>) -> String {
        let mut out = String::with_capacity(self.source.len() + 32);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(placeholder) => out.push_str(placeholder.value(fields)),
            }
        }
        out
    }

    /// The text the template was parsed from.
    #[cfg(test)]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the template reads the pod's labels or annotations, i.e. renders
    /// differently once the pod's metadata is known.
    pub fn uses_pod_metadata(&self) -> bool {
        self.parts.iter().any(|part| {
            matches!(
                part,
                Part::Field(Placeholder::Label(_) | Placeholder::Annotation(_))
            )
        })
    }

    /// The annotation keys the template reads (in template order, repeats
    /// included), so the pod metadata cache can keep those annotations.
    pub fn annotation_keys(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Field(Placeholder::Annotation(key)) => Some(key.as_str()),
            _ => None,
        })
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Longest log group or stream name CloudWatch Logs accepts.
pub const MAX_NAME_LEN: usize = 512;

/// A rendered log group name made acceptable to CloudWatch Logs: only
/// `[A-Za-z0-9._/#-]` (anything else becomes `_`), 1 to 512 characters.
pub fn sanitize_group(name: &str) -> String {
    sanitize(name, |c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#')
    })
}

/// A rendered log stream name made acceptable to CloudWatch Logs: no `:` or `*`
/// (they become `_`), no control characters, 1 to 512 characters.
pub fn sanitize_stream(name: &str) -> String {
    sanitize(name, |c| !matches!(c, ':' | '*') && !c.is_control())
}

fn sanitize(name: &str, allowed: impl Fn(char) -> bool) -> String {
    let mut out: String = name
        .chars()
        .map(|c| if allowed(c) { c } else { '_' })
        .collect();
    if out.is_empty() {
        out.push('_');
    }
    if out.len() > MAX_NAME_LEN {
        let mut cut = MAX_NAME_LEN;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields<'static> {
        Fields {
            cluster: "prod",
            node: "ip-10-0-0-1",
            namespace: "default",
            pod: "web-7d9f",
            container: "nginx",
            container_id: "abc123",
            labels: None,
            annotations: None,
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn render(template: &str) -> String {
        Template::parse(template)
            .unwrap_or_else(|err| panic!("{template}: {err}"))
            .render(&fields())
    }

    #[test]
    fn renders_every_placeholder() {
        assert_eq!(
            render("{cluster}/{node}/{namespace}/{pod}/{container}/{container_id}"),
            "prod/ip-10-0-0-1/default/web-7d9f/nginx/abc123"
        );
        assert_eq!(
            render("/aws/containerinsights/{cluster}/application"),
            "/aws/containerinsights/prod/application"
        );
        assert_eq!(
            render("{pod}_{namespace}_{container}"),
            "web-7d9f_default_nginx"
        );
    }

    #[test]
    fn renders_labels_and_annotations() {
        let labels = map(&[("app.kubernetes.io/name", "shop"), ("tier", "web")]);
        let annotations = map(&[("team", "payments"), ("empty", "")]);
        let known = Fields {
            labels: Some(&labels),
            annotations: Some(&annotations),
            ..fields()
        };
        let template =
            Template::parse("/k8s/{label:app.kubernetes.io/name}/{annotation:team}-{label:tier}")
                .unwrap();
        assert_eq!(template.render(&known), "/k8s/shop/payments-web");
        let missing =
            Template::parse("[{label:nope}|{annotation:empty}|{annotation:tier}]").unwrap();
        assert_eq!(missing.render(&known), "[||]", "missing keys render empty");
        assert_eq!(
            template.render(&fields()),
            "/k8s//-",
            "unknown pod metadata renders empty"
        );
    }

    #[test]
    fn label_and_annotation_errors_name_the_placeholder() {
        let err = Template::parse("/a/{label:}").unwrap_err();
        assert_eq!(
            err,
            "placeholder `{label:}` at position 4 has an empty key (write `{label:<key>}`)"
        );
        let err = Template::parse("{annotation:}").unwrap_err();
        assert!(
            err.contains("`{annotation:}` at position 1 has an empty key"),
            "{err}"
        );
        let err = Template::parse("x{label:a b}").unwrap_err();
        assert!(
            err.contains("`{label:a b}` at position 2 has whitespace in its key"),
            "{err}"
        );
        let err = Template::parse("{annotation:a\tb}").unwrap_err();
        assert!(err.contains("whitespace in its key"), "{err}");
        let err = Template::parse("{label:a\u{1}}").unwrap_err();
        assert!(err.contains("a control character in its key"), "{err}");
        let err = Placeholder::parse("label:a{b", 7).unwrap_err();
        assert!(
            err.contains("`{label:a{b}` at position 7 has a brace"),
            "{err}"
        );
        let err = Template::parse("{label:a{b}}").unwrap_err();
        assert!(
            err.contains("inside the placeholder opened at position 1"),
            "{err}"
        );
        let err = Template::parse("é{foo:bar}").unwrap_err();
        assert!(
            err.starts_with("unknown placeholder `{foo:bar}` at position 2; expected one of"),
            "{err}"
        );
        assert!(
            err.ends_with("{container_id}, {label:<key>}, {annotation:<key>}"),
            "lists the prefixed forms: {err}"
        );
        let err = Template::parse("{labels:x}").unwrap_err();
        assert!(err.contains("unknown placeholder `{labels:x}`"), "{err}");
        let err = Template::parse("{pod:x}").unwrap_err();
        assert!(err.contains("unknown placeholder `{pod:x}`"), "{err}");
    }

    #[test]
    fn keys_keep_colons_and_slashes() {
        let template = Template::parse("{annotation:example.com/a:b}").unwrap();
        assert_eq!(
            template.annotation_keys().collect::<Vec<_>>(),
            ["example.com/a:b"]
        );
    }

    #[test]
    fn reports_the_pod_metadata_it_reads() {
        let plain = Template::parse("{cluster}/{pod}_{{label:x}}").unwrap();
        assert!(!plain.uses_pod_metadata());
        assert_eq!(plain.annotation_keys().count(), 0);
        let labels = Template::parse("{label:app}-{pod}").unwrap();
        assert!(labels.uses_pod_metadata());
        assert_eq!(labels.annotation_keys().count(), 0);
        let both =
            Template::parse("{annotation:team}/{label:app}/{annotation:owner}/{annotation:team}")
                .unwrap();
        assert!(both.uses_pod_metadata());
        assert_eq!(
            both.annotation_keys().collect::<Vec<_>>(),
            ["team", "owner", "team"]
        );
    }

    #[test]
    fn literal_only_and_empty_templates() {
        assert_eq!(render("static-name"), "static-name");
        assert_eq!(render(""), "");
    }

    #[test]
    fn doubled_braces_are_literal() {
        assert_eq!(render("{{pod}}"), "{pod}");
        assert_eq!(render("a{{{pod}}}b"), "a{web-7d9f}b");
        assert_eq!(render("}}{{"), "}{");
    }

    #[test]
    fn unknown_placeholder_is_named() {
        let err = Template::parse("/logs/{cluster}/{podname}").unwrap_err();
        assert!(err.contains("`{podname}`"), "{err}");
        assert!(
            err.contains("{container_id}"),
            "lists the known ones: {err}"
        );
        assert!(err.contains("`{podname}` at position 17"), "{err}");
        let err = Template::parse("{}").unwrap_err();
        assert!(err.contains("unknown placeholder `{}`"), "{err}");
        let err = Template::parse("{ pod }").unwrap_err();
        assert!(err.contains("`{ pod }`"), "no trimming: {err}");
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        let err = Template::parse("abc{pod").unwrap_err();
        assert!(err.contains("unclosed `{` at position 4"), "{err}");
        let err = Template::parse("ab}c").unwrap_err();
        assert!(err.contains("unmatched `}` at position 3"), "{err}");
        let err = Template::parse("{po{d}}").unwrap_err();
        assert!(
            err.contains("inside the placeholder opened at position 1"),
            "{err}"
        );
    }

    #[test]
    fn positions_count_characters() {
        let err = Template::parse("é}").unwrap_err();
        assert!(err.contains("position 2"), "{err}");
    }

    #[test]
    fn keeps_source() {
        let template = Template::parse("{pod}-{{x}}").unwrap();
        assert_eq!(template.source(), "{pod}-{{x}}");
        assert_eq!(template.to_string(), "{pod}-{{x}}");
        assert_eq!(
            template.parts,
            vec![
                Part::Field(Placeholder::Pod),
                Part::Literal("-{x}".to_owned())
            ]
        );
    }

    #[test]
    fn names_are_sanitised_for_cloudwatch() {
        assert_eq!(
            sanitize_group("/aws/containerinsights/prod eu/app"),
            "/aws/containerinsights/prod_eu/app"
        );
        assert_eq!(sanitize_group("g:ü*"), "g___");
        assert_eq!(sanitize_stream("pod:1*x_ns_c"), "pod_1_x_ns_c");
        assert_eq!(sanitize_stream("ünïcode ok/slash"), "ünïcode ok/slash");
        assert_eq!(sanitize_stream(""), "_");
        assert_eq!(sanitize_group(&"a".repeat(600)).len(), MAX_NAME_LEN);
        let long = "é".repeat(400); // 800 bytes
        let s = sanitize_stream(&long);
        assert!(s.len() <= MAX_NAME_LEN && s.chars().all(|c| c == 'é'));
    }
}
