//! What signing one PutLogEvents request costs: the sink's day-key signer
//! (`sink::cloudwatch::sign`) against aws-sigv4's general `sign`, for an empty body
//! (the per-request part) and a 64 KiB one (a steady-load request: the payload
//! hash dominates). Run: `cargo run --release -p kubeship --example sign_bench`.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use kubeship::sink::cloudwatch::sign::PutSigner;

const CT: &str = "application/x-amz-json-1.1";
const TARGET: &str = "Logs_20140328.PutLogEvents";
const HOST: &str = "logs.us-east-1.amazonaws.com";

fn general(creds: &Credentials, time: SystemTime, body: &[u8]) -> usize {
    let identity = creds.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("logs")
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .expect("params")
        .into();
    let req = SignableRequest::new(
        "POST",
        "https://logs.us-east-1.amazonaws.com/",
        [
            ("host", HOST),
            ("content-type", CT),
            ("x-amz-target", TARGET),
        ]
        .into_iter(),
        SignableBody::Bytes(body),
    )
    .expect("request");
    let (instructions, _) = sign(req, &params).expect("sign").into_parts();
    instructions.into_parts().0.len()
}

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

fn main() {
    let creds = Credentials::new(
        "ASIAEXAMPLE",
        "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        Some("IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQ".repeat(12)),
        None,
        "bench",
    );
    let signer = PutSigner::new(HOST, "us-east-1", "logs", CT, TARGET);
    println!("{:<10} {:>14} {:>14}", "body", "day-key ns", "aws-sigv4 ns");
    for (label, body, n) in [
        ("0 B", vec![], 100_000),
        ("64 KiB", vec![b'x'; 65_536], 5_000),
    ] {
        let ours = time(n, || {
            signer
                .sign(&creds, SystemTime::now(), black_box(&body))
                .authorization
                .len()
        });
        let theirs = time(n, || general(&creds, SystemTime::now(), black_box(&body)));
        println!("{label:<10} {ours:>14.0} {theirs:>14.0}");
    }
}
