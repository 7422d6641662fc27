//! Test certificates made with openssl (which tests/run.sh installs): a CA and a server
//! certificate it signed for one IP address.

use std::path::{Path, PathBuf};
use std::process::Command;

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
/// (subjectAltName `IP:<ip>`), valid for a day. Each call makes a CA of its own, so a
/// second call (in another directory) gives a CA the first one's clients do not know.
pub fn make_certificates(dir: &Path, ip: &str) -> TestCerts {
    let p = |name: &str| dir.join(name);
    std::fs::write(
        p("server.ext"),
        format!("basicConstraints=CA:FALSE\nsubjectAltName=IP:{ip}\nextendedKeyUsage=serverAuth\n"),
    )
    .expect("write server.ext");
    let steps: [&[&str]; 3] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=kubeship test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
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
