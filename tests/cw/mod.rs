//! CloudWatch Logs test infrastructure: moto's server as the real peer ([`Moto`]), readers of
//! what it holds ([`CwApi`], [`Moto::dump`] via `tests/cw_dump.py`, [`CwDelivery`]), a
//! fault-injecting HTTP proxy ([`FaultProxy`]) and the strict `PutLogEvents` quota checker
//! ([`check_put_log_events`]).
//!
//! Typical agent test:
//!
//! ```no_run
//! use kubeship_tests::*;
//! let moto = Moto::start();
//! let proxy = FaultProxy::start(moto.addr());
//! let node = Node::new();
//! let mut c = node.add_container("shop", "web", "nginx", Format::Cri);
//! c.set_time_base_ms(Some(now_ms() - 3_600_000)); // CloudWatch drops events > 14 days old
//! c.write_lines(100);
//! let cfg = AgentConfig {
//!     cloudwatch: Some(CloudWatchOpts::for_endpoint(proxy.endpoint())),
//!     ..AgentConfig::default()
//! };
//! let mut agent = Agent::start(&node, &cfg);
//! let mut d = CwDelivery::new(&moto);
//! d.wait_all(&mut agent, &[("nginx", 100)], secs(60));
//! proxy.check_put_log_events().unwrap();
//! ```

mod http;
mod limits;
mod moto;
mod proxy;

pub use http::{Head, Response, read_head, read_request_body, roundtrip, write_response};
pub use limits::{
    EVENT_OVERHEAD_BYTES, InputEvent, MAX_AGE_MS, MAX_EVENT_MESSAGE_BYTES, MAX_EVENTS_PER_PUT,
    MAX_FUTURE_MS, MAX_PUT_BYTES, MAX_SPAN_MS, PutLogEvents, check_put_log_events,
    check_put_log_events_at,
};
pub use moto::{
    CwApi, CwBadEvent, CwDelivery, CwError, CwEvent, CwGroup, CwRecord, CwState, CwStream, Moto,
    boto3_put_and_dump, check_record_shape, cw_dump_script, dump, python, wait_for_state,
};
pub use proxy::{
    Exchange, FaultProxy, Faults, Injected, Outage, PutCall, Rejection, rejected_indexes,
};
