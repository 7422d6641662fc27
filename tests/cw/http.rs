//! Just enough HTTP/1.1 for the fault proxy and the moto API client: message heads, bodies
//! framed by `Content-Length`, `Transfer-Encoding: chunked` or the end of the connection, and a
//! one-shot client round trip (`Connection: close`). std only.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Largest head (start line + headers) accepted.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body accepted (PutLogEvents is at most ~1 MiB plus JSON escaping).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Start line and headers of a request or response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Head {
    pub start_line: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// First value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether header `name` holds `token` in its comma-separated list (case-insensitive).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Request method (first word of the start line).
    pub fn method(&self) -> &str {
        self.start_line.split(' ').next().unwrap_or("")
    }

    /// Request target (second word of the start line).
    pub fn target(&self) -> &str {
        self.start_line.split(' ').nth(1).unwrap_or("")
    }

    /// Response status code (second word of the start line).
    pub fn status(&self) -> Option<u16> {
        self.start_line.split(' ').nth(1)?.parse().ok()
    }

    /// HTTP version of a request (`HTTP/1.1`, `HTTP/1.0`).
    pub fn request_version(&self) -> &str {
        self.start_line.rsplit(' ').next().unwrap_or("")
    }

    fn chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    fn content_length(&self) -> io::Result<Option<usize>> {
        match self.get("content-length") {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| bad(format!("bad Content-Length {v:?}"))),
        }
    }
}

fn bad(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn read_line_limited<R: BufRead>(r: &mut R, budget: &mut usize) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = r
        .by_ref()
        .take(*budget as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(bad("HTTP head too large"));
    }
    *budget -= n;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed inside an HTTP head",
        ));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| bad("non-UTF-8 HTTP head"))
}

/// Reads a message head. `Ok(None)`: the connection was closed before its first byte.
pub fn read_head<R: BufRead>(r: &mut R) -> io::Result<Option<Head>> {
    let mut budget = MAX_HEAD;
    let start_line = loop {
        match read_line_limited(r, &mut budget)? {
            None => return Ok(None),
            // Tolerate empty lines before a request (RFC 9112 §2.2).
            Some(l) if l.is_empty() => continue,
            Some(l) => break l,
        }
    };
    let mut headers = Vec::new();
    loop {
        let line = read_line_limited(r, &mut budget)?.ok_or_else(|| {
            io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed in headers")
        })?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("malformed header line {line:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    Ok(Some(Head {
        start_line,
        headers,
    }))
}

fn read_chunked<R: BufRead>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut budget = 4096;
        let line = read_line_limited(r, &mut budget)?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "EOF in chunk size"))?;
        let size_text = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
        if size == 0 {
            // Trailers, up to the empty line.
            let mut budget = MAX_HEAD;
            loop {
                match read_line_limited(r, &mut budget)? {
                    None => return Ok(body),
                    Some(l) if l.is_empty() => return Ok(body),
                    Some(_) => {}
                }
            }
        }
        if body.len() + size > MAX_BODY {
            return Err(bad("chunked body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
        if &crlf != b"\r\n" {
            return Err(bad("chunk not followed by CRLF"));
        }
    }
}

fn read_exact_body<R: BufRead>(r: &mut R, n: usize) -> io::Result<Vec<u8>> {
    if n > MAX_BODY {
        return Err(bad(format!("body of {n} bytes is too large")));
    }
    let mut body = vec![0; n];
    r.read_exact(&mut body)?;
    Ok(body)
}

/// Reads a request body (chunked or `Content-Length`; none otherwise).
pub fn read_request_body<R: BufRead>(r: &mut R, head: &Head) -> io::Result<Vec<u8>> {
    if head.chunked() {
        read_chunked(r)
    } else {
        match head.content_length()? {
            Some(n) => read_exact_body(r, n),
            None => Ok(Vec::new()),
        }
    }
}

/// Reads a response body: none for 1xx/204/304 or a HEAD request, else chunked,
/// `Content-Length`, or everything until the connection closes.
pub fn read_response_body<R: BufRead>(
    r: &mut R,
    head: &Head,
    request_method: &str,
) -> io::Result<Vec<u8>> {
    let status = head.status().unwrap_or(0);
    if request_method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304
    {
        return Ok(Vec::new());
    }
    if head.chunked() {
        return read_chunked(r);
    }
    match head.content_length()? {
        Some(n) => read_exact_body(r, n),
        None => {
            let mut body = Vec::new();
            r.take(MAX_BODY as u64 + 1).read_to_end(&mut body)?;
            if body.len() > MAX_BODY {
                return Err(bad("response body too large"));
            }
            Ok(body)
        }
    }
}

/// Hop-by-hop headers and the framing headers the proxy and client set themselves.
pub fn is_hop_header(name: &str) -> bool {
    const HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "expect",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// A complete response.
#[derive(Clone, Debug)]
pub struct Response {
    pub head: Head,
    pub body: Vec<u8>,
}

impl Response {
    pub fn status(&self) -> u16 {
        self.head.status().unwrap_or(0)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Writes a response with `Content-Length` framing (end-to-end headers from `headers`).
pub fn write_response<W: Write>(
    w: &mut W,
    status: u16,
    reason: &str,
    headers: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
) -> io::Result<()> {
    let mut out = Vec::with_capacity(body.len() + 256);
    let _ = write!(out, "HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in headers.iter().filter(|(k, _)| !is_hop_header(k)) {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    let _ = write!(
        out,
        "Content-Length: {}\r\nConnection: {}\r\n\r\n",
        body.len(),
        if keep_alive { "keep-alive" } else { "close" }
    );
    out.extend_from_slice(body);
    w.write_all(&out)?;
    w.flush()
}

/// One request on a fresh connection to `addr` (`Connection: close`), skipping interim 1xx
/// responses. `headers` are end-to-end headers; `Host` is added when absent.
pub fn roundtrip(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(String, String)],
    body: &[u8],
    timeout: Duration,
) -> io::Result<Response> {
    let stream = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(5)))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    let mut req = Vec::with_capacity(body.len() + 512);
    let _ = write!(req, "{method} {target} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        let _ = write!(req, "Host: {addr}\r\n");
    }
    for (k, v) in headers.iter().filter(|(k, _)| !is_hop_header(k)) {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    let _ = write!(
        req,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    req.extend_from_slice(body);
    (&stream).write_all(&req)?;
    let mut r = BufReader::new(&stream);
    loop {
        let head = read_head(&mut r)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed without a response",
            )
        })?;
        let status = head.status().ok_or_else(|| bad("malformed status line"))?;
        if (100..200).contains(&status) {
            continue;
        }
        let body = read_response_body(&mut r, &head, method)?;
        return Ok(Response { head, body });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_bodies() {
        let raw = b"\r\nPOST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n\
                    4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\nX-T: 1\r\n\r\n\
                    POST /b HTTP/1.1\r\ncontent-length: 2\r\n\r\nhiGET /c HTTP/1.0\r\n\r\n";
        let mut r = &raw[..];
        let h = read_head(&mut r).expect("read").expect("head");
        assert_eq!((h.method(), h.target()), ("POST", "/"));
        assert_eq!(read_request_body(&mut r, &h).expect("body"), b"abcdefg");
        let h = read_head(&mut r).expect("read").expect("head");
        assert_eq!(h.target(), "/b");
        assert_eq!(read_request_body(&mut r, &h).expect("body"), b"hi");
        let h = read_head(&mut r).expect("read").expect("head");
        assert_eq!(h.request_version(), "HTTP/1.0");
        assert!(read_request_body(&mut r, &h).expect("body").is_empty());
        assert!(read_head(&mut r).expect("eof").is_none());

        let resp = b"HTTP/1.1 200 OK\r\nServer: s\r\n\r\nuntil-eof";
        let mut r = &resp[..];
        let h = read_head(&mut r).expect("read").expect("head");
        assert_eq!(h.status(), Some(200));
        assert_eq!(
            read_response_body(&mut r, &h, "POST").expect("body"),
            b"until-eof"
        );
        let mut r = &b"HTTP/1.1 204 No Content\r\n\r\n"[..];
        let h = read_head(&mut r).expect("read").expect("head");
        assert!(
            read_response_body(&mut r, &h, "POST")
                .expect("body")
                .is_empty()
        );
    }

    #[test]
    fn malformed_input_is_an_error() {
        let mut r = &b"POST / HTTP/1.1\r\nno colon here\r\n\r\n"[..];
        assert!(read_head(&mut r).is_err());
        let mut r = &b"POST / HTTP/1.1\r\nHost: x"[..];
        assert!(read_head(&mut r).is_err(), "EOF inside the head");
        let mut r = &b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nab"[..];
        let h = read_head(&mut r).expect("read").expect("head");
        assert!(read_request_body(&mut r, &h).is_err(), "short body");
        let mut r = &b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"[..];
        let h = read_head(&mut r).expect("read").expect("head");
        assert!(read_request_body(&mut r, &h).is_err(), "bad chunk size");
    }

    #[test]
    fn write_response_frames_with_content_length() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            400,
            "Bad Request",
            &[
                ("Content-Type".into(), "a/b".into()),
                ("Transfer-Encoding".into(), "chunked".into()),
            ],
            b"{}",
            true,
        )
        .expect("write");
        assert_eq!(
            String::from_utf8(out).expect("utf8"),
            "HTTP/1.1 400 Bad Request\r\nContent-Type: a/b\r\nContent-Length: 2\r\n\
             Connection: keep-alive\r\n\r\n{}"
        );
    }
}
