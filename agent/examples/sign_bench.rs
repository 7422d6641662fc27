//! What signing one PutLogEvents request costs: the sink's day-key signer
//! (`aws::sign`) against aws-sigv4's general `sign` (as `Signer::sign_general` calls it), for an empty body
//! (the per-request part) and a 64 KiB one (a steady-load request: the payload
//! hash dominates). Run: `cargo run --release -p kubeship --example sign_bench`.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use kubeship::aws::sign::{Signable, Signer};

const CT: &str = "application/x-amz-json-1.1";
const TARGET: &str = "Logs_20140328.PutLogEvents";
const HOST: &str = "logs.us-east-1.amazonaws.com";

/// Median ns per call of `f` over 7 rounds of `n` calls.
fn time(n: u32, mut f: impl FnMut() -> usize) -> f64 {
    let mut rounds: Vec<Duration> = (0..7)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..n {
                black_box(f());
            }
            t.elapsed()
        })
        .collect();
    rounds.sort();
    rounds[3].as_nanos() as f64 / f64::from(n)
}

/// A PutLogEvents request with `body`, as the sink signs it.
fn req(body: &[u8]) -> Signable<'_> {
    Signable {
        method: "POST",
        path: "/",
        headers: &[("content-type", CT), ("x-amz-target", TARGET)],
        body,
    }
}

fn main() {
    let creds = Credentials::new(
        "ASIAEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ".repeat(12)),
        None,
        "bench",
    );
    let signer = Signer::new(HOST, "us-east-1", "logs");
    let identity = creds.clone().into();
    println!("{:<10} {:>14} {:>14}", "body", "day-key ns", "aws-sigv4 ns");
    for (label, body, n) in [
        ("0 B", vec![], 100_000),
        ("64 KiB", vec![b'x'; 65_536], 5_000),
    ] {
        let ours = time(n, || {
            signer
                .sign(&creds, SystemTime::now(), &req(black_box(&body)))
                .authorization
                .len()
        });
        let theirs = time(n, || {
            signer
                .sign_general(
                    "https://logs.us-east-1.amazonaws.com/",
                    &identity,
                    SystemTime::now(),
                    &req(black_box(&body)),
                )
                .expect("sign")
                .authorization
                .len()
        });
        println!("{label:<10} {ours:>14.0} {theirs:>14.0}");
    }
}
