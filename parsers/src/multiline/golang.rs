//! Go panics, fatal errors and goroutine dumps.
//!
//! A state machine over the lines of one stream:
//!
//! * `panic: ...`, `fatal error: ...`, `goroutine N [status]:` and signal
//!   headers such as `SIGQUIT: quit` start a group and enter the trace;
//! * `runtime: ...` lines (printed before `fatal error: stack overflow` and
//!   friends) start a group too, and a `fatal error:` right after them joins
//!   it;
//! * inside the trace these continue: blank lines; indented lines (the
//!   `\t/path/file.go:12 +0x1d` location lines, nested `\tpanic: ...`);
//!   `goroutine N [...]:`; `[signal ...]`; function-call lines such as
//!   `main.main()`, `panic({0x4580a0?, 0x4e0d40?})` or
//!   `main.(*Server).handle(0x0, {0x5b8e40, 0xc0000a2000})`;
//!   `created by ...`; `runtime stack:`; `PC=0x...`; register dumps
//!   (`rax    0x0`); `...additional frames elided...`; `exit status N`
//!   (printed by `go run`); further `runtime: ...` lines;
//! * anything else — including a second unindented `panic:` — starts a new
//!   group.

use super::Action;

/// Whether the last line left us inside a Go crash report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum State {
    /// Not in a trace.
    #[default]
    Idle,
    /// After `runtime: ...` lines, before the `fatal error:` they announce.
    Preamble,
    /// Inside a panic or goroutine dump.
    Trace,
}

pub(super) fn classify(state: &mut State, line: &[u8]) -> Action {
    if line.starts_with(b"panic: ") || line.starts_with(b"fatal error: ") {
        let joins = *state == State::Preamble && line.starts_with(b"fatal error: ");
        *state = State::Trace;
        return if joins {
            Action::Continue
        } else {
            Action::Start
        };
    }
    if line.starts_with(b"runtime: ") {
        return match *state {
            State::Idle => {
                *state = State::Preamble;
                Action::Start
            }
            State::Preamble | State::Trace => Action::Continue,
        };
    }
    if *state == State::Idle {
        if is_goroutine_header(line) || is_signal_header(line) {
            *state = State::Trace;
        }
        return Action::Start;
    }
    if is_trace_line(line) {
        *state = State::Trace;
        Action::Continue
    } else {
        *state = State::Idle;
        Action::Start
    }
}

fn is_trace_line(line: &[u8]) -> bool {
    line.is_empty()
        || line[0] == b' '
        || line[0] == b'\t'
        || is_goroutine_header(line)
        || line.starts_with(b"[signal ")
        || line.starts_with(b"created by ")
        || line.starts_with(b"runtime stack:")
        || line.starts_with(b"PC=")
        || line.starts_with(b"exit status ")
        || line.starts_with(b"...additional frames elided...")
        || is_func_line(line)
        || is_register_line(line)
}

/// `goroutine 1 [running]:`, `goroutine 7 gp=0xc000007340 m=0 mp=0x56ac00 [idle]:`.
fn is_goroutine_header(line: &[u8]) -> bool {
    line.starts_with(b"goroutine ")
        && line.ends_with(b"]:")
        && line[b"goroutine ".len()..]
            .first()
            .is_some_and(u8::is_ascii_digit)
}

/// `SIGSEGV: segmentation violation`, `SIGQUIT: quit`.
fn is_signal_header(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"SIG") else {
        return false;
    };
    let n = rest.iter().take_while(|b| b.is_ascii_uppercase()).count();
    n > 0 && rest[n..].starts_with(b": ")
}

/// A stack frame's function line: a call expression ending in `)`, whose
/// text before the first `(` has no whitespace (`main.main()`,
/// `net/http.(*conn).serve(0xc0001b2000, {0x9a0f38, 0xc0000a2c90})`).
fn is_func_line(line: &[u8]) -> bool {
    if !line.ends_with(b")") {
        return false;
    }
    match memchr::memchr(b'(', line) {
        Some(paren) => {
            let head = &line[..paren];
            !head.iter().any(u8::is_ascii_whitespace)
                && (paren > 0 || line.starts_with(b"(*") || line.starts_with(b"(0x"))
        }
        None => false,
    }
}

/// A register dump line after a fatal signal: `rax    0x0`, `rflags 0x10246`.
fn is_register_line(line: &[u8]) -> bool {
    let n = line
        .iter()
        .take_while(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        .count();
    if !(1..=6).contains(&n) {
        return false;
    }
    let rest = line[n..].trim_ascii_start();
    rest.len() < line.len() - n
        && rest.len() > 2
        && rest.starts_with(b"0x")
        && rest[2..].iter().all(u8::is_ascii_hexdigit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multiline::{Rule, group_lines};

    fn lines(text: &str) -> Vec<&str> {
        text.split('\n').collect()
    }

    #[test]
    fn line_shapes() {
        assert!(is_func_line(b"main.main()"));
        assert!(is_func_line(b"panic({0x4580a0?, 0x4e0d40?})"));
        assert!(is_func_line(
            b"main.(*Server).handle(0x0, {0x5b8e40, 0xc0000a2000})"
        ));
        assert!(is_func_line(b"github.com/acme/api/v2.(*Client).Do(...)"));
        assert!(!is_func_line(b"GET /users (200)"));
        assert!(!is_func_line(b"done (ok)"));
        assert!(!is_func_line(b"plain text"));
        assert!(is_register_line(b"rax    0x0"));
        assert!(is_register_line(b"rflags 0x10246"));
        assert!(!is_register_line(b"rax 12"));
        assert!(!is_register_line(b"rax0x0"));
        assert!(is_goroutine_header(b"goroutine 1 [running]:"));
        assert!(is_goroutine_header(
            b"goroutine 7 gp=0xc000007340 m=0 mp=0x56ac00 [idle]:"
        ));
        assert!(!is_goroutine_header(b"goroutine leak detected [x]:x"));
        assert!(is_signal_header(b"SIGQUIT: quit"));
        assert!(!is_signal_header(b"SIG: x"));
    }

    #[test]
    fn nil_pointer_panic_with_goroutines() {
        let text = "\
2026/01/02 03:04:05 starting server on :8080
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a2f3c]

goroutine 1 [running]:
main.(*Server).handle(0x0, {0x5b8e40, 0xc0000a2000})
\t/app/server.go:42 +0x1c
main.main()
\t/app/main.go:17 +0x85

goroutine 18 [chan receive]:
main.worker(0xc00001e0c0)
\t/app/worker.go:9 +0x3a
created by main.main in goroutine 1
\t/app/main.go:12 +0x5d
exit status 2
2026/01/02 03:04:07 restarted";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Go, text),
            [l[0].to_string(), l[1..16].join("\n"), l[16].to_string()]
        );
    }

    #[test]
    fn deadlock_fatal_error() {
        let text = "\
waiting for jobs
fatal error: all goroutines are asleep - deadlock!

goroutine 1 [chan receive]:
main.main()
\t/src/x.go:5 +0x2d
level=info msg=\"supervisor restarted process\"";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Go, text),
            [l[0].to_string(), l[1..6].join("\n"), l[6].to_string()]
        );
    }

    #[test]
    fn stack_overflow_with_runtime_preamble() {
        let text = "\
recursing
runtime: goroutine stack exceeds 1000000000-byte limit
runtime: sp=0xc020160398 stack=[0xc020160000, 0xc040160000]
fatal error: stack overflow

runtime stack:
runtime.throw({0x4a3c4f?, 0x0?})
\t/usr/local/go/src/runtime/panic.go:1077 +0x5c fp=0x7ffd1e9d1f08 sp=0x7ffd1e9d1ed8 pc=0x43657c
...additional frames elided...
rax    0x0
rflags 0x10246
after crash";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Go, text),
            [l[0].to_string(), l[1..11].join("\n"), l[11].to_string()]
        );
    }

    #[test]
    fn recovered_repanic_and_second_panic() {
        let text = "\
panic: first [recovered]
\tpanic: second

goroutine 1 [running]:
main.main()
\t/app/main.go:9 +0x1d
panic: another process";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Go, text),
            [l[..6].join("\n"), l[6].to_string()]
        );
    }

    #[test]
    fn sigquit_dump() {
        let text = "\
SIGQUIT: quit
PC=0x46b0e1 m=0 sigcode=0

goroutine 0 gp=0x5a1e40 m=0 mp=0x5a2a60 [idle]:
runtime.futex(0x5a2ba0, 0x80, 0x0, 0x0, 0x0, 0x0)
\t/usr/local/go/src/runtime/sys_linux_amd64.s:557 +0x21
ok";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Go, text),
            [l[..6].join("\n"), l[6].to_string()]
        );
    }

    #[test]
    fn plain_lines_stay_single() {
        let text = "main.main()\n\tindented\n\nexit status 2\ngoroutine x";
        assert_eq!(
            group_lines(Rule::Go, text),
            [
                "main.main()",
                "\tindented",
                "",
                "exit status 2",
                "goroutine x"
            ]
        );
    }
}
