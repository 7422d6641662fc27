//! A loopback remote-write receiver the test scripts: each request is read whole,
//! recorded (time, head, decoded body) and answered as the script says: a status with
//! headers, no answer for a while (a hanging receiver), or a closed connection.

use std::io::{BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{WriteRequest, decode};
use crate::cw::{Head, read_head, read_request_body};

/// What the receiver does with a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Act {
    /// Answers with this status and these headers (and a short text body).
    Answer(u16, Vec<(String, String)>),
    /// Reads the request and answers nothing for this long, then closes.
    Hang(Duration),
}

impl Act {
    /// `200 OK`.
    pub fn ok() -> Act {
        Act::Answer(200, vec![])
    }
    /// A bare status.
    pub fn status(code: u16) -> Act {
        Act::Answer(code, vec![])
    }
}

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// When its body had been read.
    pub at: Instant,
    pub head: Head,
    pub body: Vec<u8>,
    /// The body decoded (`Err` with why when it is not a snappy `WriteRequest`).
    pub request: Result<WriteRequest, String>,
    /// What the script did with it.
    pub act: Act,
}

type Script = Box<dyn FnMut(usize, &Received) -> Act + Send>;

/// The receiver. Stops accepting when dropped.
pub struct RwServer {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Script>>,
    stop: Arc<AtomicBool>,
}

impl RwServer {
    /// Listens on a free loopback port; `script(n, request)` decides request `n` (from 0).
    pub fn start(script: impl FnMut(usize, &Received) -> Act + Send + 'static) -> RwServer {
        Self::start_on(
            TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"),
            script,
        )
    }

    /// Listens on `port` (which must be free).
    pub fn start_on_port(
        port: u16,
        script: impl FnMut(usize, &Received) -> Act + Send + 'static,
    ) -> RwServer {
        let l = TcpListener::bind(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("bind 127.0.0.1:{port}: {e}"));
        Self::start_on(l, script)
    }

    fn start_on(
        listener: TcpListener,
        script: impl FnMut(usize, &Received) -> Act + Send + 'static,
    ) -> RwServer {
        let addr = listener.local_addr().expect("local_addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let s = RwServer {
            addr,
            received: Arc::default(),
            script: Arc::new(Mutex::new(Box::new(script))),
            stop: Arc::default(),
        };
        let (received, script, stop) = (s.received.clone(), s.script.clone(), s.stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (received, script, stop) =
                            (received.clone(), script.clone(), stop.clone());
                        std::thread::spawn(move || serve(conn, &received, &script, &stop));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        s
    }

    /// The URL of its remote-write path.
    pub fn url(&self) -> String {
        format!("http://{}/api/v1/write", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    /// The requests answered 2xx, decoded, in the order they were received.
    pub fn accepted(&self) -> Vec<WriteRequest> {
        self.received()
            .into_iter()
            .filter(|r| matches!(r.act, Act::Answer(200..=299, _)))
            .map(|r| r.request.expect("an accepted request decodes"))
            .collect()
    }

    /// Replaces the script (for requests from now on).
    pub fn set_script(&self, script: impl FnMut(usize, &Received) -> Act + Send + 'static) {
        *self.script.lock().unwrap() = Box::new(script);
    }
}

impl Drop for RwServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(
    conn: TcpStream,
    received: &Mutex<Vec<Received>>,
    script: &Mutex<Script>,
    stop: &AtomicBool,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(120)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone"));
    let mut writer = conn;
    while !stop.load(Ordering::SeqCst) {
        let Ok(Some(head)) = read_head(&mut reader) else {
            return;
        };
        let Ok(body) = read_request_body(&mut reader, &head) else {
            return;
        };
        let mut r = Received {
            at: Instant::now(),
            request: decode(&body),
            head,
            body,
            act: Act::ok(),
        };
        // The script decides and the request is recorded under one lock each, in order.
        let mut all = received.lock().unwrap();
        let n = all.len();
        r.act = (script.lock().unwrap())(n, &r);
        let act = r.act.clone();
        all.push(r);
        drop(all);
        match act {
            Act::Hang(d) => {
                std::thread::sleep(d);
                return;
            }
            Act::Answer(code, headers) => {
                let text = format!("status {code} from the test receiver");
                let mut out = format!("HTTP/1.1 {code} Test\r\nContent-Length: {}\r\n", text.len());
                for (k, v) in headers {
                    out.push_str(&format!("{k}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&text);
                if writer.write_all(out.as_bytes()).is_err() {
                    return;
                }
            }
        }
    }
}
