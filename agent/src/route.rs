//! Log group / stream name templates.
//!
//! A [`Template`] is a string such as `/aws/containerinsights/{cluster}/application`
//! or `{pod}_{namespace}_{container}`, parsed once (at config load) into literal
//! parts and placeholders, then rendered for every container with [`Fields`].
//!
//! Placeholders: `{cluster}`, `{node}`, `{namespace}`, `{pod}`, `{container}`,
//! `{container_id}`. `{{` and `}}` stand for literal braces. Anything else between
//! braces, and any unbalanced brace, is a parse error naming the offender.
//!
//! What this module does not do: it does not sanitize rendered names for a
//! particular sink (CloudWatch's allowed characters and length limits are the
//! sink's business), and it does not cache rendered names.

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

/// One `{...}` placeholder. Parameterised placeholders (e.g. a future
/// `{label:<key>}`) become variants carrying their argument; see [`Placeholder::parse`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Placeholder {
    Cluster,
    Node,
    Namespace,
    Pod,
    Container,
    ContainerId,
}

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
    /// Parses the text between the braces. Prefixed forms such as
    /// `label:<key>` belong here (`name.split_once(':')`).
    fn parse(name: &str) -> Result<Placeholder, String> {
        PLACEHOLDERS
            .iter()
            .find(|(spelling, _)| *spelling == name)
            .map(|&(_, placeholder)| placeholder)
            .ok_or_else(|| {
                let known: Vec<String> = PLACEHOLDERS
                    .iter()
                    .map(|(spelling, _)| format!("{{{spelling}}}"))
                    .collect();
                format!(
                    "unknown placeholder `{{{name}}}`; expected one of {}",
                    known.join(", ")
                )
            })
    }

    fn value<'a>(self, fields: &Fields<'a>) -> &'a str {
        match self {
            Placeholder::Cluster => fields.cluster,
            Placeholder::Node => fields.node,
            Placeholder::Namespace => fields.namespace,
            Placeholder::Pod => fields.pod,
            Placeholder::Container => fields.container,
            Placeholder::ContainerId => fields.container_id,
        }
    }
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
                    let placeholder = Placeholder::parse(&name)?;
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
    pub fn source(&self) -> &str {
        &self.source
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
        }
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
