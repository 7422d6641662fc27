//! Test certificates made with openssl (which tests/run.sh installs): a CA and a server
//! certificate it signed for one IP address.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::{run_with_timeout, secs};

/// A test CA and a server certificate it signed, as PEM files.
#[derive(Clone, Debug)]
pub struct TestCerts {
    /// The CA's certificate (what a client trusts).
    pub ca: PathBuf,
    /// The server's certificate, for `ip` only.
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

/// Makes, in `dir`, a new CA and a server certificate it signed for the IP address `ip`
/// (subjectAltName `IP:<ip>`), valid for a day. Each call makes a CA of its own, named
/// apart from the others, so a second call (in another directory) gives a CA the first
/// one's clients do not know (its certificates fail with `UnknownIssuer`).
pub fn make_certificates(dir: &Path, ip: &str) -> TestCerts {
    static CAS: AtomicU32 = AtomicU32::new(0);
    let p = |name: &str| dir.join(name);
    let subject = format!(
        "/CN=kubeship test CA {}-{}",
        std::process::id(),
        CAS.fetch_add(1, Ordering::Relaxed)
    );
    std::fs::write(
        p("server.ext"),
        format!("basicConstraints=CA:FALSE\nsubjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("write server.ext");
    let steps: [&[&str]; 3] = [
        &[
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", &subject,
            "-keyout", "ca.key", "-out", "ca.pem",
        ],
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=kubeship test server",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    ];
    for args in steps {
        let out = run_with_timeout(
            Command::new("openssl").args(args).current_dir(dir),
            secs(60),
        );
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    TestCerts {
        ca: p("ca.pem"),
        cert: p("server.pem"),
        key: p("server.key"),
    }
}
