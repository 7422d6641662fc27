//! Python tracebacks.
//!
//! A state machine over the lines of one stream:
//!
//! * `Traceback (most recent call last):` at column 0, or an (indented)
//!   `+ Exception Group Traceback (most recent call last):` header, starts a
//!   group and enters the frames;
//! * in the frames, indented lines (`  File "x.py", line 3, in f`, source
//!   lines, `~~~^^^` markers, exception-group `|` rails) and blank lines
//!   continue; the first unindented line continues too and ends the frames
//!   when it looks like the exception (`ValueError: msg`,
//!   `requests.exceptions.ConnectionError: ...`, a bare `KeyboardInterrupt`:
//!   a dotted name whose last part starts with an upper-case letter),
//!   otherwise it starts a new group;
//! * after the exception line, blank lines and indented lines continue, as
//!   do the chaining sentences `During handling of the above exception,
//!   another exception occurred:` and `The above exception was the direct
//!   cause of the following exception:`; after a chaining sentence the next
//!   `Traceback` header continues the same group;
//! * an exception-group traceback is indented throughout, so there the
//!   first unindented line starts a new group;
//! * everything else starts a new group (and leaves traceback mode).
//!
//! The log line that precedes a traceback (`logger.exception("...")`) stays
//! its own record: the traceback header always starts a group.

use super::Action;

const HEADER: &[u8] = b"Traceback (most recent call last):";
const GROUP_HEADER: &[u8] = b"+ Exception Group Traceback (most recent call last):";
const CHAINS: [&[u8]; 2] = [
    b"During handling of the above exception, another exception occurred:",
    b"The above exception was the direct cause of the following exception:",
];

/// Where in a traceback the last line left us.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum State {
    /// Not in a traceback.
    #[default]
    Idle,
    /// Inside the frames of a traceback.
    Frames,
    /// Inside an exception-group traceback, which is indented throughout
    /// (its exceptions are printed inside the `|` rails).
    GroupFrames,
    /// Just after the exception line that ends a traceback.
    AfterException,
    /// After a chaining sentence, waiting for the next traceback header.
    AfterChain,
}

pub(super) fn classify(state: &mut State, line: &[u8]) -> Action {
    let trimmed = line.trim_ascii_start();
    let indented = trimmed.len() < line.len();
    let blank = trimmed.is_empty();

    let in_frames = matches!(*state, State::Frames | State::GroupFrames);
    let next = if line.starts_with(HEADER) {
        Some(State::Frames)
    } else if !in_frames && trimmed.starts_with(GROUP_HEADER) {
        Some(State::GroupFrames)
    } else {
        None
    };
    if let Some(next) = next {
        let chained = *state == State::AfterChain;
        *state = next;
        return if chained {
            Action::Continue
        } else {
            Action::Start
        };
    }
    match *state {
        State::Idle => Action::Start,
        State::Frames | State::GroupFrames if indented || blank => Action::Continue,
        State::Frames if is_exception_line(line) => {
            *state = State::AfterException;
            Action::Continue
        }
        State::AfterException if indented || blank => Action::Continue,
        State::AfterException | State::GroupFrames if CHAINS.contains(&line) => {
            *state = State::AfterChain;
            Action::Continue
        }
        State::AfterChain if blank => Action::Continue,
        State::Frames | State::GroupFrames | State::AfterException | State::AfterChain => {
            *state = State::Idle;
            Action::Start
        }
    }
}

/// `Name`, `pkg.Name`, `Name: message` or `Name:` — what Python prints as
/// the last line of a traceback.
fn is_exception_line(line: &[u8]) -> bool {
    let n = line
        .iter()
        .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_' || b == b'.'))
        .unwrap_or(line.len());
    let (name, rest) = line.split_at(n);
    let last = name.rsplit(|&b| b == b'.').next().unwrap_or(name);
    let name_ok = name
        .first()
        .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_')
        && last.first().is_some_and(u8::is_ascii_uppercase);
    name_ok && (rest.is_empty() || rest == b":" || rest.starts_with(b": "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multiline::{Rule, group_lines};

    fn lines(text: &str) -> Vec<&str> {
        text.split('\n').collect()
    }

    #[test]
    fn exception_line_shapes() {
        for ok in [
            "ValueError: bad",
            "KeyError: 'user:1'",
            "requests.exceptions.ConnectionError: HTTPConnectionPool(host='db', port=80)",
            "KeyboardInterrupt",
            "__main__.MyError: x",
            "StopIteration:",
        ] {
            assert!(is_exception_line(ok.as_bytes()), "{ok:?}");
        }
        for bad in [
            "INFO:root:hello",
            "2026-01-02 x",
            "",
            "  ValueError: x",
            "a b",
            "x.: y",
            "done",
            "pkg.lower: x",
        ] {
            assert!(!is_exception_line(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn logging_exception_trace() {
        let text = "\
2026-01-02 03:04:05,123 INFO worker: starting
2026-01-02 03:04:05,456 ERROR worker: job 17 failed
Traceback (most recent call last):
  File \"/app/worker.py\", line 41, in run
    result = self.handle(job)
             ^^^^^^^^^^^^^^^^
  File \"/app/worker.py\", line 77, in handle
    raise ValueError(f\"bad payload: {job.id}\")
ValueError: bad payload: 17
2026-01-02 03:04:05,789 INFO worker: next job";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Python, text),
            [
                l[0].to_string(),
                l[1].to_string(),
                l[2..9].join("\n"),
                l[9].to_string()
            ]
        );
    }

    #[test]
    fn chained_during_handling() {
        let text = "\
INFO before
Traceback (most recent call last):
  File \"/app/db.py\", line 12, in get
    return self.cache[key]
           ~~~~~~~~~~^^^^^
KeyError: 'user:1'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File \"/app/main.py\", line 5, in <module>
    db.get(\"user:1\")
  File \"/app/db.py\", line 14, in get
    raise LookupError(key)
LookupError: user:1
INFO after";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Python, text),
            [l[0].to_string(), l[1..15].join("\n"), l[15].to_string()]
        );
    }

    #[test]
    fn chained_direct_cause_with_dotted_name() {
        let text = "\
Traceback (most recent call last):
  File \"/usr/lib/python3.12/site-packages/urllib3/connection.py\", line 198, in _new_conn
    sock = connection.create_connection(
OSError: [Errno 111] Connection refused

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File \"/app/client.py\", line 9, in fetch
    return requests.get(url, timeout=5)
requests.exceptions.ConnectionError: HTTPConnectionPool(host='api', port=80): Max retries exceeded
GET /healthz 200";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Python, text),
            [l[..11].join("\n"), l[11].to_string()]
        );
    }

    #[test]
    fn bare_exception_name_and_new_traceback() {
        let text = "\
Traceback (most recent call last):
  File \"/app/main.py\", line 3, in <module>
    time.sleep(60)
KeyboardInterrupt
Traceback (most recent call last):
  File \"/app/main.py\", line 1, in <module>
SystemExit: 2
shutting down";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Python, text),
            [l[..4].join("\n"), l[4..7].join("\n"), l[7].to_string()]
        );
    }

    #[test]
    fn exception_group() {
        let text = "\
starting tasks
  + Exception Group Traceback (most recent call last):
  |   File \"/app/tasks.py\", line 8, in main
  |     async with asyncio.TaskGroup() as tg:
  | ExceptionGroup: unhandled errors in a TaskGroup (1 sub-exception)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File \"/app/tasks.py\", line 3, in job
    |     raise ValueError(\"nope\")
    | ValueError: nope
    +------------------------------------
done";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Python, text),
            [l[0].to_string(), l[1..11].join("\n"), l[11].to_string()]
        );
    }

    #[test]
    fn unterminated_frames_then_log_line() {
        let text = "\
Traceback (most recent call last):
  File \"/app/x.py\", line 1, in <module>
2026-01-02 03:04:05 INFO restarted";
        let l = lines(text);
        assert_eq!(
            group_lines(Rule::Python, text),
            [l[..2].join("\n"), l[2].to_string()]
        );
    }

    #[test]
    fn plain_lines_stay_single() {
        let text = "INFO:root:hello\n  indented but no traceback\nValueError: not after frames";
        assert_eq!(
            group_lines(Rule::Python, text),
            [
                "INFO:root:hello",
                "  indented but no traceback",
                "ValueError: not after frames"
            ]
        );
    }

    #[test]
    fn blank_after_exception_is_kept_but_next_line_starts() {
        let text =
            "Traceback (most recent call last):\n  File \"a.py\", line 1\nValueError: x\n\nnext";
        assert_eq!(
            group_lines(Rule::Python, text),
            [
                "Traceback (most recent call last):\n  File \"a.py\", line 1\nValueError: x\n",
                "next"
            ]
        );
    }
}
