//! Cancelling runs from another thread (or from inside a task).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Something that can be told to stop starting tasks.
pub(crate) trait Stop: Send + Sync {
    /// Stops starting tasks; returns once no task can start any more.
    fn stop(&self);
}

/// Cancels the runs it is given to: once [`Cancel::cancel`] returns, no
/// task of those runs starts (tasks already started finish), and a run
/// given it later stops before its first task. Cheap to clone; clones
/// cancel together.
#[derive(Clone, Default)]
pub struct Cancel(Arc<Shared>);

#[derive(Default)]
struct Shared {
    cancelled: AtomicBool,
    runs: Mutex<Vec<Weak<dyn Stop>>>,
}

impl Cancel {
    /// A token nothing has cancelled.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Stops every run this token was given to.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        let runs = std::mem::take(&mut *lock(&self.0.runs));
        for run in runs.iter().filter_map(Weak::upgrade) {
            run.stop();
        }
    }

    /// Whether [`Cancel::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Follows `run` until it ends (it holds `run` weakly); stops it at once
    /// when cancelled already.
    pub(crate) fn watch(&self, run: Weak<dyn Stop>) {
        {
            let mut runs = lock(&self.0.runs);
            runs.retain(|r| r.strong_count() > 0);
            runs.push(run.clone());
        }
        // Checked after registering: a cancel between the two either sees
        // the run in the list or is seen here.
        if self.is_cancelled() {
            if let Some(run) = run.upgrade() {
                run.stop();
            }
        }
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancel")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
