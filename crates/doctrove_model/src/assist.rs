//! A second core for one encoder pass. When a short request runs alone (a search query: one
//! pass of a few tokens), each linear layer's outputs are split between the request's thread
//! and a helper, so the weights, which such a pass reads once from memory and which bound its
//! time, are read by two cores at once. The helper spins between products: a pass is a few
//! milliseconds and has two dozen products, and waking a parked thread for each would cost
//! much of what the split saves. It exists only while the pass runs, on a core the pass holds.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The helper's half of one product: a closure on the poster's stack, run through `run`.
#[derive(Clone, Copy)]
struct Task {
    run: unsafe fn(*const ()),
    closure: *const (),
}

// SAFETY: the closure is `Sync` (see `Assist::both`) and outlives the task: `both` does not
// return, nor unwind past its frame, before the helper reports the task done.
unsafe impl Send for Task {}

pub struct Assist {
    task: Mutex<Option<Task>>,
    /// Tasks posted and tasks done, counted: the helper runs task `posted` once it differs
    /// from the last it ran.
    posted: AtomicUsize,
    done: AtomicUsize,
    failed: AtomicBool,
    stop: AtomicBool,
}

impl Assist {
    /// Runs `pass` with a helper thread beside it, stopped and joined when `pass` returns.
    pub fn with_helper<R>(pass: impl FnOnce(&Assist) -> R) -> R {
        let assist = Assist {
            task: Mutex::new(None),
            posted: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            failed: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        };
        struct StopOnDrop<'a>(&'a Assist);
        impl Drop for StopOnDrop<'_> {
            fn drop(&mut self) {
                self.0.stop.store(true, Ordering::Release);
            }
        }
        std::thread::scope(|scope| {
            scope.spawn(|| assist.serve());
            let _stop = StopOnDrop(&assist);
            pass(&assist)
        })
    }

    /// Runs `mine` on this thread and `theirs` on the helper at the same time; returns when both
    /// are done (and panics if the helper's half did).
    pub fn both<F: Fn() + Sync>(&self, mine: impl FnOnce(), theirs: F) {
        unsafe fn call<F: Fn()>(closure: *const ()) {
            (*(closure as *const F))()
        }
        *self.task.lock().unwrap_or_else(|e| e.into_inner()) = Some(Task {
            run: call::<F>,
            closure: &theirs as *const F as *const (),
        });
        let posted = self.posted.fetch_add(1, Ordering::AcqRel) + 1;
        /// Waits for the helper however `mine` ends, so `theirs` outlives its use.
        struct Wait<'a>(&'a Assist, usize);
        impl Drop for Wait<'_> {
            fn drop(&mut self) {
                while self.0.done.load(Ordering::Acquire) < self.1 {
                    std::hint::spin_loop();
                }
            }
        }
        let wait = Wait(self, posted);
        mine();
        drop(wait);
        assert!(!self.failed.load(Ordering::Acquire), "the helper's half of a product failed");
    }

    fn serve(&self) {
        let mut ran = 0;
        loop {
            let posted = self.posted.load(Ordering::Acquire);
            if posted == ran {
                if self.stop.load(Ordering::Acquire) {
                    return;
                }
                std::hint::spin_loop();
                continue;
            }
            let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(task) = task {
                // SAFETY: see `Task`: the poster waits for `done` before the closure goes away.
                if catch_unwind(AssertUnwindSafe(|| unsafe { (task.run)(task.closure) })).is_err() {
                    self.failed.store(true, Ordering::Release);
                }
            }
            ran = posted;
            self.done.store(posted, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Assist;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn both_halves_run_every_time_before_both_returns() {
        let (mine, theirs) = (AtomicUsize::new(0), AtomicUsize::new(0));
        Assist::with_helper(|assist| {
            for round in 1..=1000 {
                assist.both(
                    || _ = mine.fetch_add(1, Ordering::Relaxed),
                    || _ = theirs.fetch_add(1, Ordering::Relaxed),
                );
                assert_eq!(theirs.load(Ordering::Relaxed), round);
            }
        });
        assert_eq!(mine.into_inner(), 1000);
    }

    #[test]
    #[should_panic(expected = "helper's half")]
    fn a_failed_half_fails_the_product() {
        Assist::with_helper(|assist| assist.both(|| (), || panic!("inside the helper")));
    }
}
