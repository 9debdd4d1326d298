//! The threads that run argon2id: a fixed set of `max_concurrent_hashes` threads, so the memory each
//! hash takes (19 MiB with the default parameters) is allocated and freed by the same few threads,
//! whose allocator arenas keep it and reuse it for the next hash. On tokio's blocking pool, whichever
//! of its threads ran a hash kept its own arena's copy: a burst of 200 sign-ins left 255 MiB resident
//! with at most two hashes at once (bench/run, issue 17).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, mpsc};

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed pool of hashing threads; they end when the pool is dropped.
pub(crate) struct HashPool {
    jobs: mpsc::Sender<Job>,
}

impl HashPool {
    pub(crate) fn new(threads: usize) -> Self {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = Arc::clone(&rx);
            let spawned = std::thread::Builder::new()
                .name(format!("castellan-hash-{i}"))
                .spawn(move || {
                    loop {
                        let job = match rx.lock() {
                            Ok(r) => r.recv(),
                            Err(_) => return,
                        };
                        let Ok(job) = job else { return };
                        // A panicking job answers nothing (its caller sees `None`); the thread stays.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "could not start a password hashing thread");
            }
        }
        Self { jobs }
    }

    /// Runs `f` on one of the pool's threads (queued until one is free); `None` if `f` panicked or
    /// no thread could be started.
    pub(crate) async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = tx.send(f());
        });
        self.jobs.send(job).ok()?;
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_the_pool_threads_and_a_panic_answers_none() {
        let pool = HashPool::new(2);
        let name = pool
            .run(|| std::thread::current().name().map(str::to_owned))
            .await
            .flatten();
        assert!(name.is_some_and(|n| n.starts_with("castellan-hash-")));
        assert_eq!(pool.run(|| -> u8 { panic!("boom") }).await, None);
        // The pool still answers after a panic.
        assert_eq!(pool.run(|| 7).await, Some(7));
    }
}
