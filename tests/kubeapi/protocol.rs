//! The API server's protocol, without I/O: which requests are served ([`route`]), list
//! bodies and paging ([`list`]), watch event lines ([`outs`], [`event_line`]) and `Status`
//! errors.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::store::{Entry, EventType, KubeResource, Store};
use crate::cw::Head;

/// `timeoutSeconds` of a watch that gives none (the real server picks 30–60 minutes).
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);

pub(super) fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        410 => "Gone",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

/// A `Status` object (`status: Failure`), as the API server reports errors.
pub(super) fn status_json(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut v = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    });
    if let Some(d) = details {
        v["details"] = d;
    }
    v
}

pub(super) fn status_body(
    code: u16,
    reason: &str,
    message: &str,
    details: Option<Value>,
) -> Vec<u8> {
    serde_json::to_vec(&status_json(code, reason, message, details)).expect("serialize Status")
}

/// A request the fake refuses, and whether the client should never have sent it.
pub(super) struct Reject {
    pub(super) status: u16,
    pub(super) reason: &'static str,
    pub(super) message: String,
    pub(super) details: Option<Value>,
    /// Why the agent should not send this (None: a legitimate request answered with an error,
    /// e.g. 410 for a compacted resource version).
    pub(super) unexpected: Option<String>,
}

impl Reject {
    pub(super) fn unexpected(
        status: u16,
        reason: &'static str,
        message: impl Into<String>,
    ) -> Reject {
        let message = message.into();
        Reject {
            status,
            reason,
            unexpected: Some(message.clone()),
            message,
            details: None,
        }
    }

    pub(super) fn expired(message: String) -> Reject {
        Reject {
            status: 410,
            reason: "Expired",
            message,
            details: None,
            unexpected: None,
        }
    }
}

pub(super) struct ListReq {
    pub(super) resource: KubeResource,
    pub(super) limit: Option<usize>,
    pub(super) cont: Option<String>,
    pub(super) rv: Option<String>,
    pub(super) rv_match: Option<String>,
}

pub(super) struct WatchReq {
    pub(super) resource: KubeResource,
    pub(super) rv: Option<String>,
    pub(super) timeout: Duration,
    pub(super) bookmarks: bool,
    pub(super) initial_events: bool,
}

pub(super) enum Route {
    List(ListReq),
    Watch(WatchReq),
}

pub(super) fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `application/x-www-form-urlencoded` text (`%XX`, `+` for space).
pub(super) fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_val);
                let lo = b.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(h), Some(l)) => out.push(h * 16 + l),
                    _ => return Err(format!("bad percent-encoding in {s:?}")),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("non-UTF-8 query text {s:?}"))
}

pub(super) fn parse_query(q: &str) -> Result<Vec<(String, String)>, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((percent_decode(k)?, percent_decode(v)?))
        })
        .collect()
}

/// What the fake serves, for messages.
pub(super) fn served(node: &str) -> String {
    format!(
        "the fake serves only GET list/watch of /api/v1/pods?fieldSelector=spec.nodeName={node} \
         and /api/v1/namespaces"
    )
}

/// Decides what a request is; a [`Reject`] for anything the agent should not send.
pub(super) fn route(head: &Head, node: &str) -> Result<Route, Reject> {
    let target = head.target();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if head.method() != "GET" {
        return Err(Reject::unexpected(
            405,
            "MethodNotAllowed",
            format!(
                "{} is not allowed: the fake API server is read-only",
                head.method()
            ),
        ));
    }
    let resource = match path {
        "/api/v1/pods" => KubeResource::Pods,
        "/api/v1/namespaces" => KubeResource::Namespaces,
        _ => {
            let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
            let mut r = Reject::unexpected(
                404,
                "NotFound",
                "the server could not find the requested resource",
            );
            if let ["api", "v1", "namespaces", _, "pods", name] = parts.as_slice() {
                r.message = format!("pods \"{name}\" not found");
                r.details = Some(json!({"name": name, "kind": "pods"}));
            } else if let ["api", "v1", "namespaces", name] = parts.as_slice() {
                r.message = format!("namespaces \"{name}\" not found");
                r.details = Some(json!({"name": name, "kind": "namespaces"}));
            }
            r.unexpected = Some(format!("unknown or unserved path; {}", served(node)));
            return Err(r);
        }
    };
    if let Some(accept) = head.get("accept")
        && !accept.contains("json")
        && !accept.contains("*/*")
    {
        return Err(Reject::unexpected(
            406,
            "NotAcceptable",
            format!("only application/json is served, not Accept: {accept}"),
        ));
    }
    let params =
        parse_query(query).map_err(|e| Reject::unexpected(400, "BadRequest", e.to_string()))?;
    let mut p: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in params {
        if p.contains_key(&k) {
            return Err(Reject::unexpected(
                400,
                "BadRequest",
                format!("query parameter {k} given twice"),
            ));
        }
        p.insert(k, v);
    }
    let bad = |m: String| Reject::unexpected(400, "BadRequest", m);
    let watch = match p.remove("watch").as_deref() {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(v) => return Err(bad(format!("invalid watch={v:?}"))),
    };
    match (resource, p.remove("fieldSelector")) {
        (KubeResource::Pods, Some(fs))
            if fs == format!("spec.nodeName={node}") || fs == format!("spec.nodeName=={node}") => {}
        (KubeResource::Pods, fs) => {
            return Err(bad(format!(
                "pods are served only with fieldSelector=spec.nodeName={node}, not {fs:?}"
            )));
        }
        (KubeResource::Namespaces, None) => {}
        (KubeResource::Namespaces, Some(fs)) => {
            return Err(bad(format!(
                "namespaces are served without a field selector, not {fs:?}"
            )));
        }
    }
    if let Some(ls) = p.remove("labelSelector") {
        return Err(bad(format!("unexpected labelSelector={ls:?}")));
    }
    let rv = p.remove("resourceVersion");
    let rv_match = p.remove("resourceVersionMatch");
    let route = if watch {
        let timeout = match p.remove("timeoutSeconds") {
            None => DEFAULT_WATCH_TIMEOUT,
            Some(t) => Duration::from_secs(
                t.parse()
                    .map_err(|_| bad(format!("invalid timeoutSeconds={t:?}")))?,
            ),
        };
        let bookmarks = match p.remove("allowWatchBookmarks").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(bad(format!("invalid allowWatchBookmarks={v:?}"))),
        };
        let initial_events = match p.remove("sendInitialEvents").as_deref() {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(bad(format!("invalid sendInitialEvents={v:?}"))),
        };
        match rv_match.as_deref() {
            None if !initial_events => {}
            Some("NotOlderThan") if initial_events => {}
            other => {
                return Err(bad(format!(
                    "resourceVersionMatch={other:?} with sendInitialEvents={initial_events}: \
                     the API server requires NotOlderThan exactly with sendInitialEvents=true"
                )));
            }
        }
        if initial_events && !bookmarks {
            return Err(bad(
                "sendInitialEvents=true requires allowWatchBookmarks=true".into(),
            ));
        }
        Route::Watch(WatchReq {
            resource,
            rv,
            timeout,
            bookmarks,
            initial_events,
        })
    } else {
        let limit = match p.remove("limit") {
            None => None,
            Some(l) => match l.parse::<usize>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => return Err(bad(format!("invalid limit={l:?}"))),
            },
        };
        let cont = p.remove("continue").filter(|c| !c.is_empty());
        if cont.is_some() && (rv.as_deref().is_some_and(|v| !v.is_empty()) || rv_match.is_some()) {
            return Err(bad(
                "specifying resource version is not allowed when using continue".into(),
            ));
        }
        match (rv.as_deref(), rv_match.as_deref()) {
            (_, None) => {}
            (None, Some(m)) => {
                return Err(bad(format!(
                    "resourceVersionMatch={m} is forbidden unless resourceVersion is provided"
                )));
            }
            (Some("0"), Some("Exact")) => {
                return Err(bad(
                    "resourceVersionMatch=Exact is forbidden for resourceVersion \"0\"".into(),
                ));
            }
            (Some(_), Some("NotOlderThan" | "Exact")) => {}
            (Some(_), Some(m)) => return Err(bad(format!("invalid resourceVersionMatch={m}"))),
        }
        Route::List(ListReq {
            resource,
            limit,
            cont,
            rv,
            rv_match,
        })
    };
    if let Some(k) = p.keys().next() {
        return Err(bad(format!(
            "unexpected query parameter {k} for a {}",
            if watch { "watch" } else { "list" }
        )));
    }
    Ok(route)
}

pub(super) fn too_old(rv: u64, horizon: u64) -> String {
    format!("too old resource version: {rv} ({horizon})")
}

pub(super) fn too_large(rv: u64, current: u64) -> Reject {
    let mut r = Reject::unexpected(
        504,
        "Timeout",
        format!("Too large resource version: {rv}, current: {current}"),
    );
    r.details = Some(json!({
        "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
        "retryAfterSeconds": 1,
    }));
    r
}

pub(super) fn parse_rv(v: &str) -> Result<u64, Reject> {
    v.parse().map_err(|_| {
        Reject::unexpected(400, "BadRequest", format!("invalid resourceVersion {v:?}"))
    })
}

/// Whether `object` of `resource` passes the selector the fake serves it with.
pub(super) fn selected(resource: KubeResource, node: &str, object: &Value) -> bool {
    match resource {
        KubeResource::Pods => object["spec"]["nodeName"].as_str() == Some(node),
        KubeResource::Namespaces => true,
    }
}

/// The continue token for a list at `rv` that goes on after `key` (opaque to clients).
pub(super) fn continue_token(rv: u64, key: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{key}\u{0}")});
    raw.to_string().bytes().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// `(rv, last key served)` of a continue token.
pub(super) fn parse_continue(token: &str) -> Option<(u64, String)> {
    let b = token.as_bytes();
    if !b.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = b
        .chunks(2)
        .map(|c| Some(hex_val(c[0])? * 16 + hex_val(c[1])?))
        .collect();
    let v: Value = serde_json::from_slice(&bytes?).ok()?;
    let rv = v["rv"].as_u64()?;
    let start = v["start"].as_str()?.strip_suffix('\u{0}')?.to_string();
    Some((rv, start))
}

/// A list response body, or why not.
pub(super) fn list(store: &Store, node: &str, req: &ListReq) -> Result<Vec<u8>, Reject> {
    let current = store.rv();
    let (at, after) = match &req.cont {
        Some(token) => {
            let Some((at, after)) = parse_continue(token) else {
                return Err(Reject::unexpected(
                    400,
                    "BadRequest",
                    format!("invalid continue token {token:?}"),
                ));
            };
            if at < store.horizon() {
                return Err(Reject::expired(
                    "The provided continue parameter is too old to display a consistent list \
                     result. You can start a new list without the continue parameter."
                        .into(),
                ));
            }
            if at > current {
                return Err(too_large(at, current));
            }
            (at, Some(after))
        }
        None => match req.rv.as_deref() {
            None | Some("" | "0") => (current, None),
            Some(v) => {
                let rv = parse_rv(v)?;
                if rv > current {
                    return Err(too_large(rv, current));
                }
                // Exact when asked for, and (the legacy rule) for a paged list without a
                // match; otherwise any state at least this fresh: the latest.
                let exact = match req.rv_match.as_deref() {
                    Some(m) => m == "Exact",
                    None => req.limit.is_some(),
                };
                if exact {
                    if rv < store.horizon() {
                        return Err(Reject::expired(too_old(rv, store.horizon())));
                    }
                    (rv, None)
                } else {
                    (current, None)
                }
            }
        },
    };
    let snapshot = store.snapshot(req.resource, at);
    let mut items = snapshot
        .iter()
        .filter(|(k, _)| after.as_ref().is_none_or(|a| k.as_str() > a.as_str()))
        .filter(|(_, o)| selected(req.resource, node, o));
    let mut page = Vec::new();
    let mut last_key = None;
    for (k, o) in items.by_ref() {
        if req.limit.is_some_and(|l| page.len() >= l) {
            break;
        }
        let mut item = (**o).clone();
        // List items carry no apiVersion/kind, as the API server sends them.
        if let Some(m) = item.as_object_mut() {
            m.remove("apiVersion");
            m.remove("kind");
        }
        page.push(item);
        last_key = Some(k.clone());
    }
    let mut metadata = json!({ "resourceVersion": at.to_string() });
    if req.limit.is_some_and(|l| page.len() >= l) {
        // Peek: is anything left after this page?
        let remaining = snapshot
            .iter()
            .filter(|(k, _)| last_key.as_ref().is_some_and(|a| k.as_str() > a.as_str()))
            .filter(|(_, o)| selected(req.resource, node, o))
            .count();
        if remaining > 0 {
            metadata["continue"] = json!(continue_token(at, last_key.as_deref().unwrap_or("")));
            if req.resource == KubeResource::Namespaces {
                // Set only for lists without selectors.
                metadata["remainingItemCount"] = json!(remaining);
            }
        }
    }
    let body = json!({
        "kind": req.resource.list_kind(),
        "apiVersion": "v1",
        "metadata": metadata,
        "items": page,
    });
    Ok(serde_json::to_vec(&body).expect("serialize list"))
}

/// One line of a watch stream, to be serialized outside the lock.
pub(super) enum Out {
    Object(EventType, Arc<Value>),
    /// A BOOKMARK at this resource version; `true`: it ends the initial events.
    Bookmark(u64, bool),
    Error(Value),
}

pub(super) fn event_line(resource: KubeResource, out: &Out) -> Vec<u8> {
    let mut line = Vec::new();
    let (kind, object) = match out {
        Out::Object(t, o) => (t.wire(), (**o).clone()),
        Out::Bookmark(rv, initial_end) => {
            let mut o = json!({
                "kind": resource.kind(),
                "apiVersion": "v1",
                "metadata": {"resourceVersion": rv.to_string()},
            });
            if *initial_end {
                o["metadata"]["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            ("BOOKMARK", o)
        }
        Out::Error(status) => ("ERROR", status.clone()),
    };
    line.extend_from_slice(format!("{{\"type\":\"{kind}\",\"object\":").as_bytes());
    serde_json::to_writer(&mut line, &object).expect("serialize watch event");
    line.extend_from_slice(b"}\n");
    line
}

/// The events a watch of `resource` sends for log `entries`: changes filtered through the
/// selector the way the API server's watch cache does it (an object entering the selection
/// is ADDED, one leaving it is DELETED with its previous state), bookmarks if allowed.
pub(super) fn outs(entries: &[Entry], req: &WatchReq, node: &str) -> Vec<Out> {
    let mut out = Vec::new();
    for e in entries {
        match e {
            Entry::Bookmark(rv) => {
                if req.bookmarks {
                    out.push(Out::Bookmark(*rv, false));
                }
            }
            Entry::Change(c) if c.resource == req.resource => {
                let now = c.kind != EventType::Deleted && selected(c.resource, node, &c.object);
                let before = c
                    .prev
                    .as_ref()
                    .is_some_and(|p| selected(c.resource, node, p));
                match (now, before) {
                    (true, false) => out.push(Out::Object(EventType::Added, c.object.clone())),
                    (true, true) => out.push(Out::Object(EventType::Modified, c.object.clone())),
                    (false, true) if c.kind == EventType::Deleted => {
                        out.push(Out::Object(EventType::Deleted, c.object.clone()));
                    }
                    (false, true) => {
                        let mut last = (**c.prev.as_ref().expect("prev")).clone();
                        last["metadata"]["resourceVersion"] = json!(c.rv.to_string());
                        out.push(Out::Object(EventType::Deleted, Arc::new(last)));
                    }
                    (false, false) => {}
                }
            }
            Entry::Change(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        assert_eq!(
            parse_query("fieldSelector=spec.nodeName%3Dnode-1&limit=500&&x").expect("parse"),
            vec![
                ("fieldSelector".into(), "spec.nodeName=node-1".into()),
                ("limit".into(), "500".into()),
                ("x".into(), String::new()),
            ]
        );
        assert_eq!(percent_decode("a+b%2Fc").expect("decode"), "a b/c");
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%4").is_err());
    }

    #[test]
    fn continue_tokens_round_trip() {
        let t = continue_token(1234, "ns/pod-1");
        assert_eq!(parse_continue(&t), Some((1234, "ns/pod-1".to_string())));
        assert_eq!(parse_continue("zz"), None);
        assert_eq!(parse_continue("abc"), None);
    }

    fn head(target: &str) -> Head {
        Head {
            start_line: format!("GET {target} HTTP/1.1"),
            headers: vec![],
        }
    }

    fn unexpected(target: &str) -> String {
        match route(&head(target), "n1") {
            Err(r) => r.unexpected.expect("unexpected"),
            Ok(_) => panic!("{target} was accepted"),
        }
    }

    #[test]
    fn routes() {
        assert!(matches!(
            route(
                &head("/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&limit=500"),
                "n1"
            ),
            Ok(Route::List(ListReq {
                limit: Some(500),
                ..
            }))
        ));
        assert!(matches!(
            route(
                &head(
                    "/api/v1/pods?watch=true&timeoutSeconds=290&fieldSelector=spec.nodeName%3Dn1\
                     &allowWatchBookmarks=true&resourceVersion=5"
                ),
                "n1"
            ),
            Ok(Route::Watch(WatchReq {
                bookmarks: true,
                initial_events: false,
                ..
            }))
        ));
        assert!(matches!(
            route(&head("/api/v1/namespaces?"), "n1"),
            Ok(Route::List(_))
        ));
        assert!(unexpected("/api/v1/pods?limit=500").contains("spec.nodeName=n1"));
        assert!(unexpected("/api/v1/pods?fieldSelector=spec.nodeName%3Dn2").contains("not"));
        assert!(unexpected("/api/v1/namespaces?labelSelector=a%3Db").contains("labelSelector"));
        assert!(unexpected("/api/v1/namespaces?pretty=true").contains("pretty"));
        assert!(unexpected("/api/v1/namespaces/ns/pods/x").contains("unserved path"));
        assert!(unexpected("/api/v1/namespaces?continue=x&resourceVersion=3").contains("continue"));
        assert!(
            unexpected("/api/v1/namespaces?watch=true&resourceVersionMatch=Exact")
                .contains("NotOlderThan")
        );
        assert!(
            unexpected("/api/v1/namespaces?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan")
                .contains("allowWatchBookmarks")
        );
    }
}
