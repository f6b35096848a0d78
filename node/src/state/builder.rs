//! [E] The node's builder thread: where decision tables are rebuilt, views built from a BGP
//! RIB or an MRT dump, and views encoded or decoded for transfer.
//!
//! That work takes seconds of CPU at full scale. It runs on one thread per node, at a lower
//! CPU priority than the DNS threads (nice 10), one job at a time in the order given, so
//! answers go first when the CPU is short and a view waits (measured in BENCHMARKS.md, "BGP
//! churn"). The thread belongs to the node that started it and ends when the node's last
//! [`Builder`] handle is dropped: nodes in one process (the demo, tests, netsim) each have
//! their own.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tracing::warn;

/// Nice value of the builder thread: below the DNS threads (0), above idle (19), so a build
/// still progresses, at about a tenth of a busy core, when DNS takes the rest.
const BUILDER_NICE: libc::c_int = 10;

/// Jobs at least this long free enough memory (old decision tables, a replaced view) to be
/// worth handing back to the system afterwards (`memory::release_free`).
const RELEASE_AFTER: Duration = Duration::from_millis(50);

type Job = Box<dyn FnOnce() + Send>;

/// A handle on a node's builder thread; cloning it shares the thread.
#[derive(Clone, Debug)]
pub struct Builder {
    jobs: mpsc::Sender<Job>,
}

impl Builder {
    /// Starts a builder thread named `name`.
    pub fn start(name: &str) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                lower_priority();
                for job in queue {
                    let started = Instant::now();
                    // A panicking build loses that job's result (its receiver sees the
                    // sender dropped), not the builder.
                    let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    // A long job rebuilt tables over full views and freed the old ones:
                    // that memory goes back to the system instead of staying in RSS.
                    if started.elapsed() >= RELEASE_AFTER {
                        crate::memory::release_free();
                    }
                }
            })?;
        Ok(Self { jobs })
    }

    /// Runs `job` on the builder thread after the jobs given before it; the receiver gets
    /// its result (or an error if the job panicked).
    pub fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> oneshot::Receiver<T> {
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(job());
        });
        if let Err(mpsc::SendError(job)) = self.jobs.send(job) {
            // The thread is gone (it cannot panic out of its loop): build here rather than
            // lose the result.
            job();
        }
        rx
    }
}

#[cfg(target_os = "linux")]
fn lower_priority() {
    // SAFETY: gettid and setpriority take and return plain integers; on Linux, PRIO_PROCESS
    // with a thread id changes that thread only.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BUILDER_NICE)
    };
    if result != 0 {
        warn!(error = %std::io::Error::last_os_error(), "cannot lower the builder thread's priority");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_in_order_on_the_nodes_own_thread_and_a_panic_loses_only_its_job() {
        let a = Builder::start("test-builder-a").unwrap();
        let b = Builder::start("test-builder-b").unwrap();
        let name = || std::thread::current().name().map(str::to_owned);
        let first = a.run(name);
        let failed = a.run(|| -> u32 { panic!("a bad job") });
        let second = a.run(name);
        let other = b.run(name);
        assert_eq!(first.await.unwrap().as_deref(), Some("test-builder-a"));
        assert!(failed.await.is_err());
        assert_eq!(second.await.unwrap().as_deref(), Some("test-builder-a"));
        assert_eq!(other.await.unwrap().as_deref(), Some("test-builder-b"));
    }
}
