//! A schema-less, span-annotated view of the YAML document, used only to put a
//! line and column on problems that serde cannot locate itself:
//!
//! - unknown keys, which `serde_ignored` reports as a path without a position
//!   ([`Tree::key_location`] finds the key itself);
//! - type errors, which serde-saphyr reports with a position but without the key
//!   path ([`Tree::node_at`] finds the path and what was actually written).
//!
//! It also turns `serde_ignored` paths into [`Segment`]s, dropping the steps that
//! serde-saphyr's `Spanned` wrapper adds.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// One step of a key path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Segment {
    Key(String),
    Index(usize),
}

/// Renders a path as `logs.multiline[0].rule`.
pub(super) fn render_path(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// The map key serde-saphyr's `Spanned<T>` uses to mark its synthetic
/// `{marker, value, referenced, defined}` mapping (private to that crate, so
/// matched by spelling).
const SPANNED_MARKER: &str = "__serde_saphyr_private_spanned";

/// Converts a path reported by `serde_ignored` into segments. Returns `None`
/// for paths that are artefacts of `Spanned<T>` rather than user keys.
pub(super) fn ignored_path(path: &serde_ignored::Path<'_>) -> Option<Vec<Segment>> {
    use serde_ignored::Path;
    let mut segments = match path {
        Path::Root => return Some(Vec::new()),
        Path::Seq { parent, .. }
        | Path::Map { parent, .. }
        | Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_path(parent)?,
    };
    match path {
        Path::Seq { index, .. } => segments.push(Segment::Index(*index)),
        Path::Map { parent, key } => {
            let inside_spanned = matches!(parent, Path::NewtypeStruct { .. });
            match key.as_str() {
                SPANNED_MARKER => return None,
                "value" if inside_spanned => {}
                "referenced" | "defined" if inside_spanned => return None,
                _ => segments.push(Segment::Key(key.clone())),
            }
        }
        _ => {}
    }
    Some(segments)
}

/// A YAML node with the locations of its keys and values.
#[derive(Debug)]
pub(super) enum Node {
    Map(Vec<(Spanned<Key>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Scalar(String),
    Null,
}

/// A mapping key as written (`on` stays `on`, not the YAML 1.1 boolean), which
/// is how serde hands keys to struct field visitors. A complex key (a list or
/// mapping used as a key) fails to parse; no config key can be one.
#[derive(Debug)]
pub(super) struct Key(String);

/// The whole document.
#[derive(Debug)]
pub(super) struct Tree<'t> {
    text: &'t str,
    root: Spanned<Node>,
}

/// What [`Tree::node_at`] found.
#[derive(Debug)]
pub(super) struct KeyAt {
    pub path: String,
    /// A short description of the value, e.g. "`abc`" or "a list".
    pub written: String,
}

impl<'t> Tree<'t> {
    pub fn parse(text: &'t str) -> Result<Tree<'t>, serde_saphyr::Error> {
        Ok(Tree {
            text,
            root: serde_saphyr::from_str(text)?,
        })
    }

    /// The location of the last segment: the key itself, or the sequence item.
    pub fn key_location(&self, segments: &[Segment]) -> Option<Location> {
        let mut node = &self.root;
        let mut location = None;
        for segment in segments {
            let next = match (segment, &node.value) {
                (Segment::Key(wanted), Node::Map(entries)) => entries
                    .iter()
                    .rev()
                    .find(|(key, _)| key.value.0 == *wanted)
                    .map(|(key, value)| (key.referenced, value)),
                (Segment::Index(index), Node::Seq(items)) => {
                    items.get(*index).map(|item| (item.referenced, item))
                }
                _ => None,
            };
            let (at, child) = next?;
            location = Some(at);
            node = child;
        }
        location
    }

    /// The innermost value starting exactly at `line:column`, or else the last
    /// value starting before it.
    pub fn node_at(&self, line: u64, column: u64) -> Option<KeyAt> {
        let mut best: Option<(Location, Vec<Segment>, &Node)> = None;
        let mut path = Vec::new();
        visit(&self.root, &mut path, &mut |location, path, node| {
            let here = (location.line(), location.column());
            if location == Location::UNKNOWN || here > (line, column) {
                return;
            }
            // Later (or equal, i.e. nested) starts win.
            if best
                .as_ref()
                .is_none_or(|(b, _, _)| here >= (b.line(), b.column()))
            {
                best = Some((location, path.to_vec(), node));
            }
        });
        best.map(|(location, segments, node)| KeyAt {
            path: render_path(&segments),
            written: self.describe(location, node),
        })
    }

    /// A short description of a value: its text as written for scalars.
    fn describe(&self, location: Location, node: &Node) -> String {
        let text = match node {
            Node::Map(_) => return "a mapping".to_owned(),
            Node::Seq(_) => return "a list".to_owned(),
            Node::Null => return "nothing (null)".to_owned(),
            Node::Scalar(parsed) => {
                let span = location.span();
                span.byte_offset()
                    .zip(span.byte_len())
                    .and_then(|(start, len)| {
                        let start = usize::try_from(start).ok()?;
                        let end = start.checked_add(usize::try_from(len).ok()?)?;
                        self.text.get(start..end)
                    })
                    .filter(|written| !written.is_empty())
                    .unwrap_or(parsed)
            }
        };
        let short: String = text.chars().take(40).collect();
        if short.len() < text.len() {
            format!("`{short}…`")
        } else {
            format!("`{short}`")
        }
    }
}

fn visit<'t>(
    node: &'t Spanned<Node>,
    path: &mut Vec<Segment>,
    f: &mut dyn FnMut(Location, &[Segment], &'t Node),
) {
    f(node.referenced, path, &node.value);
    match &node.value {
        Node::Map(entries) => {
            for (key, value) in entries {
                path.push(Segment::Key(key.value.0.clone()));
                visit(value, path, f);
                path.pop();
            }
        }
        Node::Seq(items) => {
            for (index, item) in items.iter().enumerate() {
                path.push(Segment::Index(index));
                visit(item, path, f);
                path.pop();
            }
        }
        Node::Scalar(_) | Node::Null => {}
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

macro_rules! scalar_visits {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<Node, E> {
            Ok(Node::Scalar(v.to_string()))
        }
    )*};
}

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    scalar_visits!(visit_bool: bool, visit_i64: i64, visit_u64: u64, visit_i128: i128,
        visit_u128: u128, visit_f64: f64, visit_str: &str);

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
        Ok(Node::Scalar(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Node, D::Error> {
        Node::deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key()? {
            entries.push((key, map.next_value()?));
        }
        Ok(Node::Map(entries))
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping key")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }
        }
        deserializer.deserialize_str(KeyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
a: 1
b:
  c: [1, {d: x}]
  \"e f\": hello
3: y
on: ~
";

    #[test]
    fn locates_keys_and_items() {
        let tree = Tree::parse(DOC).unwrap();
        let loc =
            |segments: &[Segment]| tree.key_location(segments).map(|l| (l.line(), l.column()));
        let key = |k: &str| Segment::Key(k.to_owned());
        assert_eq!(loc(&[key("a")]), Some((1, 1)));
        assert_eq!(loc(&[key("b"), key("e f")]), Some((4, 3)));
        assert_eq!(
            loc(&[key("b"), key("c"), Segment::Index(1), key("d")]),
            Some((3, 11))
        );
        assert_eq!(loc(&[key("3")]), Some((5, 1)));
        assert_eq!(loc(&[key("on")]), Some((6, 1)));
        assert_eq!(loc(&[key("b"), key("nope")]), None);
        assert_eq!(loc(&[key("a"), key("deeper")]), None);
    }

    #[test]
    fn finds_the_value_at_a_position() {
        let tree = Tree::parse(DOC).unwrap();
        let found = tree.node_at(3, 14).unwrap();
        assert_eq!(found.path, "b.c[1].d");
        assert_eq!(found.written, "`x`");
        let found = tree.node_at(3, 6).unwrap();
        assert_eq!(found.path, "b.c");
        assert_eq!(found.written, "a list");
        let found = tree.node_at(6, 5).unwrap();
        assert_eq!(found.path, "on");
        assert_eq!(found.written, "nothing (null)");
        let found = tree.node_at(5, 4).unwrap();
        assert_eq!(found.path, "3");
        assert_eq!(found.written, "`y`", "as written, not the YAML 1.1 boolean");
    }

    #[test]
    fn complex_keys_are_rejected() {
        let err = Tree::parse("? [1]\n: z\n").unwrap_err();
        assert_eq!(err.location().map(|l| l.line()), Some(1));
    }

    #[test]
    fn spanned_artefacts_are_dropped_from_ignored_paths() {
        use serde_ignored::Path;
        let root = Path::Root;
        let logs = Path::Map {
            parent: &root,
            key: "logs".to_owned(),
        };
        let some = Path::Some { parent: &logs };
        let list = Path::Map {
            parent: &some,
            key: "multiline".to_owned(),
        };
        let item = Path::Seq {
            parent: &list,
            index: 2,
        };
        let spanned = Path::NewtypeStruct { parent: &item };
        let value = Path::Map {
            parent: &spanned,
            key: "value".to_owned(),
        };
        let unknown = Path::Map {
            parent: &value,
            key: "rulez".to_owned(),
        };
        let segments = ignored_path(&unknown).unwrap();
        assert_eq!(render_path(&segments), "logs.multiline[2].rulez");
        let marker = Path::Map {
            parent: &spanned,
            key: SPANNED_MARKER.to_owned(),
        };
        assert_eq!(ignored_path(&marker), None);
    }
}
