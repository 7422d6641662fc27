//! A destination for unit tests: [`Collect`] keeps every push in memory.

use std::sync::Mutex;

use super::series::{Destination, Sample};

/// Keeps every push in memory and wakes waiters (unit tests).
#[derive(Default)]
pub struct Collect {
    pushes: Mutex<Vec<Vec<Sample>>>,
    /// The thread each push came from, in the same order.
    threads: Mutex<Vec<std::thread::ThreadId>>,
    pushed: tokio::sync::Notify,
}

impl Collect {
    /// Every push so far, in order.
    pub fn pushes(&self) -> Vec<Vec<Sample>> {
        self.pushes.lock().unwrap().clone()
    }

    /// The thread each push so far came from, in order.
    pub fn threads(&self) -> Vec<std::thread::ThreadId> {
        self.threads.lock().unwrap().clone()
    }

    /// Waits (at most `within`) until `cond` holds for the pushes so far.
    pub async fn wait_for(
        &self,
        within: std::time::Duration,
        cond: impl Fn(&[Vec<Sample>]) -> bool,
    ) -> Vec<Vec<Sample>> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.pushed.notified();
            {
                let p = self.pushes.lock().unwrap();
                if cond(&p) {
                    return p.clone();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let p = self.pushes.lock().unwrap();
                let names: Vec<Vec<String>> = p
                    .iter()
                    .map(|push| {
                        push.iter()
                            .map(|s| format!("{:?}={}", s.series.labels(), s.value))
                            .collect()
                    })
                    .collect();
                panic!("condition not met within {within:?}; pushes: {names:#?}");
            }
        }
    }
}

impl Destination for Collect {
    fn push(&self, samples: Vec<Sample>) {
        // Both under one lock: a reader sees them in step.
        let mut pushes = self.pushes.lock().unwrap();
        self.threads
            .lock()
            .unwrap()
            .push(std::thread::current().id());
        pushes.push(samples);
        drop(pushes);
        self.pushed.notify_waiters();
    }
}
