//! Java / JVM stack traces.
//!
//! A line continues the pending group when it is one of
//!
//! * an indented frame: `\tat com.foo.Bar.baz(Bar.java:12)`, `    at ...`
//!   (the indentation is required so prose such as `at 10:00 ...` is not
//!   glued);
//! * an elision: `\t... 12 more`, `\t... 48 common frames omitted`;
//! * a cause: `Caused by: ...`, `\tSuppressed: ...`, `Wrapped by: ...`
//!   (logback's root-cause-first mode), indented or not;
//! * an exception line: a dotted class name (`java.lang.IllegalStateException`,
//!   `com.foo.Outer$InnerException`) whose last segment contains
//!   `Exception` or ends in `Error` or `Throwable`, alone or followed by `:`;
//! * once the group holds an exception or cause line: any indented,
//!   non-blank line (driver detail lines such as PostgreSQL's
//!   `  Detail: Key (id)=(1) already exists.` sit between the exception
//!   line and its frames).
//!
//! Anything else starts a new group, so the logger's message line heads the
//! group and the next ordinary log line after the trace starts afresh. The
//! JVM's own `Exception in thread "main" java.lang.X: msg` also starts a
//! group (already in trace mode).

use super::Action;

/// Whether the pending group already holds an exception.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct State {
    in_trace: bool,
}

pub(super) fn classify(state: &mut State, line: &[u8]) -> Action {
    let trimmed = trim_indent(line);
    let indented = trimmed.len() < line.len();
    if is_trace_start(trimmed) {
        state.in_trace = true;
        return Action::Continue;
    }
    if line.starts_with(b"Exception in thread \"") {
        state.in_trace = true;
        return Action::Start;
    }
    let frame = (indented && trimmed.starts_with(b"at "))
        || (trimmed.starts_with(b"... ")
            && (trimmed.ends_with(b" more") || trimmed.ends_with(b" frames omitted")));
    // Inside a trace, any indented line continues: driver messages such as
    // PostgreSQL's `  Detail: Key (id)=(1) already exists.` sit between the
    // exception line and its frames.
    if frame || (state.in_trace && indented && !trimmed.is_empty()) {
        return Action::Continue;
    }
    state.in_trace = false;
    Action::Start
}

/// A line that opens (part of) a trace: an exception line or a cause.
fn is_trace_start(trimmed: &[u8]) -> bool {
    trimmed.starts_with(b"Caused by: ")
        || trimmed.starts_with(b"Suppressed: ")
        || trimmed.starts_with(b"Wrapped by: ")
        || is_exception_line(trimmed)
}

fn trim_indent(line: &[u8]) -> &[u8] {
    let n = line
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(line.len());
    &line[n..]
}

/// `pkg.Class` or `pkg.Class: message`, the class looking like a throwable.
fn is_exception_line(s: &[u8]) -> bool {
    let name_len = s
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'$' || b == b'.'))
        .unwrap_or(s.len());
    let (name, rest) = s.split_at(name_len);
    if !(rest.is_empty() || rest[0] == b':') {
        return false;
    }
    if name.is_empty() || name[0].is_ascii_digit() || name[0] == b'.' {
        return false;
    }
    let Some(dot) = memchr::memrchr(b'.', name) else {
        return false;
    };
    let last = &name[dot + 1..];
    if last.is_empty() || name.windows(2).any(|w| w == b"..") {
        return false;
    }
    memchr::memmem::find(last, b"Exception").is_some()
        || last.ends_with(b"Error")
        || last.ends_with(b"Throwable")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multiline::{Rule, group_lines};

    fn cont(line: &str) -> bool {
        classify(&mut State::default(), line.as_bytes()) == Action::Continue
    }

    #[test]
    fn classifies_lines() {
        for c in [
            "\tat com.example.Foo.bar(Foo.java:12)",
            "    at java.base/java.lang.Thread.run(Thread.java:833)",
            "\t... 12 more",
            "\t... 48 common frames omitted",
            "Caused by: java.lang.NullPointerException",
            "\tSuppressed: java.io.IOException: close failed",
            "Wrapped by: com.acme.ServiceException: x",
            "java.lang.IllegalStateException: Failed",
            "java.lang.IllegalStateException",
            "com.foo.BarException",
            "java.lang.OutOfMemoryError: Java heap space",
            "feign.FeignException$NotFound: [404 Not Found]",
            "scala.MatchError: 3 (of class java.lang.Integer)",
            "java.lang.Throwable",
            "org.springframework.beans.factory.BeanCreationException:",
        ] {
            assert!(cont(c), "{c:?} should continue");
        }
        for s in [
            "2026-01-02 03:04:05.678 ERROR 1 --- [main] o.s.boot.SpringApplication : failed",
            "at 10:00 the job ran",
            "Exception in thread \"main\" java.lang.RuntimeException: boom",
            "com.foo.ErrorHandler: started",
            "Error: something",
            "IllegalStateException: no package",
            "java.lang.IllegalStateException - not a colon",
            "",
            "\t",
            "... and more to come",
            "  Detail: indented, but no trace yet",
            "1.2Error",
            ".foo.BarError",
            "foo..BarError",
        ] {
            assert!(!cont(s), "{s:?} should start");
        }
    }

    #[test]
    fn spring_boot_trace_with_causes_and_suppressed() {
        let text = "\
2026-01-02 03:04:05.678  INFO 1 --- [           main] c.e.demo.DemoApplication                 : Started DemoApplication in 2.31 seconds
2026-01-02 03:04:06.001 ERROR 1 --- [nio-8080-exec-1] o.a.c.c.C.[.[.[/].[dispatcherServlet]    : Servlet.service() for servlet [dispatcherServlet] threw exception
java.lang.IllegalStateException: Failed to process order 42
\tat com.example.demo.OrderService.process(OrderService.java:57) ~[classes/:na]
\tat com.example.demo.OrderController.create(OrderController.java:31) ~[classes/:na]
\tat java.base/jdk.internal.reflect.DirectMethodHandleAccessor.invoke(DirectMethodHandleAccessor.java:103) ~[na:na]
Caused by: java.lang.NullPointerException: Cannot invoke \"String.length()\" because \"name\" is null
\tat com.example.demo.Customer.validate(Customer.java:12) ~[classes/:na]
\t... 48 common frames omitted
\tSuppressed: java.io.UncheckedIOException: close failed
\t\tat com.example.demo.Res.close(Res.java:9)
\t\t... 50 more
2026-01-02 03:04:06.010  INFO 1 --- [nio-8080-exec-2] c.e.demo.OrderController                 : order 43 ok";
        let lines: Vec<&str> = text.split('\n').collect();
        let groups = group_lines(Rule::Java, text);
        assert_eq!(groups.len(), 3, "{groups:#?}");
        assert_eq!(groups[0], lines[0]);
        assert_eq!(groups[1], lines[1..12].join("\n"));
        assert_eq!(groups[2], lines[12]);
    }

    #[test]
    fn uncaught_exception_from_jvm() {
        let text = "\
Starting batch job
Exception in thread \"main\" java.lang.RuntimeException: boom
    detail line
    at Main.run(Main.java:9)
    at Main.main(Main.java:5)
Caused by: java.lang.ArithmeticException: / by zero
    at Main.divide(Main.java:14)
    ... 2 more
Batch job exited";
        assert_eq!(
            group_lines(Rule::Java, text),
            [
                "Starting batch job",
                "Exception in thread \"main\" java.lang.RuntimeException: boom\n    detail line\n    at Main.run(Main.java:9)\n    at Main.main(Main.java:5)\nCaused by: java.lang.ArithmeticException: / by zero\n    at Main.divide(Main.java:14)\n    ... 2 more",
                "Batch job exited",
            ]
        );
    }

    #[test]
    fn two_traces_back_to_back() {
        let text = "\
WARN retrying
com.acme.net.TimeoutException
\tat com.acme.net.Client.call(Client.java:88)
WARN retrying again
com.acme.net.TimeoutException
\tat com.acme.net.Client.call(Client.java:88)";
        let groups = group_lines(Rule::Java, text);
        assert_eq!(groups.len(), 2);
        assert!(groups[0].starts_with("WARN retrying\n"));
        assert!(groups[1].starts_with("WARN retrying again\n"));
        assert!(groups.iter().all(|g| g.ends_with("(Client.java:88)")));
    }

    #[test]
    fn indented_detail_inside_trace() {
        let text = "\
2026-01-02 03:04:05.000 ERROR 1 --- [main] o.h.e.j.s.SqlExceptionHelper : insert failed
org.postgresql.util.PSQLException: ERROR: duplicate key value violates unique constraint \"users_pkey\"
  Detail: Key (id)=(1) already exists.
\tat org.postgresql.core.v3.QueryExecutorImpl.receiveErrorResponse(QueryExecutorImpl.java:2725)
2026-01-02 03:04:05.100  INFO 1 --- [main] c.e.App : continuing
  indented after a plain line is its own record";
        let groups = group_lines(Rule::Java, text);
        assert_eq!(groups.len(), 3, "{groups:#?}");
        assert!(groups[0].ends_with("(QueryExecutorImpl.java:2725)"));
        assert!(groups[0].contains("\n  Detail: Key"));
        assert_eq!(
            groups[1],
            "2026-01-02 03:04:05.100  INFO 1 --- [main] c.e.App : continuing"
        );
    }

    #[test]
    fn plain_lines_stay_single() {
        let text = "one\ntwo\n\nthree";
        assert_eq!(group_lines(Rule::Java, text), ["one", "two", "", "three"]);
    }
}
