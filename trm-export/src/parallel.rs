//! Puzzles spread over threads with results in puzzle order: what `run`, `golden` and `verify`
//! share so that their output is the same, byte for byte, for any `--threads`.
//!
//! Each thread owns a state (its engines and their scratch arenas, built by the caller) and
//! takes puzzle indices from one shared queue (an atomic counter), so a slow puzzle or a busy
//! core holds up no other thread's work; the calling thread receives the results and hands
//! them on in index order as soon as the next one is there.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;

/// The number of threads for `jobs` puzzles: `requested`, or with 0 one per core
/// ([`std::thread::available_parallelism`]), never more than `jobs` and at least 1.
pub fn thread_count(requested: usize, jobs: usize) -> usize {
    let n = if requested == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        requested
    };
    n.clamp(1, jobs.max(1))
}

/// Runs `work(state, i)` for every `i` in `0..jobs`, on one scoped thread per state, and calls
/// `sink(i, result)` on the calling thread in index order (0, 1, 2, ...) as results arrive.
/// When `sink` returns `false`, no further puzzle is started and no further result is handed
/// on (the puzzles already running finish and are dropped). With no state, nothing runs.
///
/// A panic in `work` is propagated once every thread has stopped.
pub fn for_each_ordered<S, T, W, K>(states: Vec<S>, jobs: usize, work: W, mut sink: K)
where
    S: Send,
    T: Send,
    W: Fn(&mut S, usize) -> T + Sync,
    K: FnMut(usize, T) -> bool,
{
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<(usize, T)>();
        for mut state in states {
            let tx = tx.clone();
            let (next, stop, work) = (&next, &stop, &work);
            scope.spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= jobs {
                        break;
                    }
                    let result = work(&mut state, i);
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        // The workers hold the only senders left: the loop ends when they all have.
        drop(tx);
        let mut pending = BTreeMap::new();
        let mut due = 0;
        for (i, result) in rx {
            pending.insert(i, result);
            while let Some(result) = pending.remove(&due) {
                due += 1;
                if !sink(due - 1, result) {
                    stop.store(true, Ordering::Relaxed);
                    // Dropping the receiver ends the workers' sends (their results are dropped).
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_index_order_for_any_thread_count() {
        for threads in 1..=4 {
            let states: Vec<usize> = (0..threads).collect();
            let mut seen = Vec::new();
            // Uneven work: later indices finish first on other threads.
            for_each_ordered(
                states,
                23,
                |_, i| {
                    std::thread::sleep(std::time::Duration::from_millis(((23 - i) % 5) as u64));
                    i * i
                },
                |i, v| {
                    seen.push((i, v));
                    true
                },
            );
            let want: Vec<(usize, usize)> = (0..23).map(|i| (i, i * i)).collect();
            assert_eq!(seen, want, "{threads} threads");
        }
    }

    #[test]
    fn a_sink_that_stops_gets_no_later_result() {
        for threads in 1..=3 {
            let mut seen = Vec::new();
            for_each_ordered(
                vec![(); threads],
                50,
                |_, i| i,
                |i, _| {
                    seen.push(i);
                    i < 6
                },
            );
            assert_eq!(seen, (0..=6).collect::<Vec<_>>(), "{threads} threads");
        }
    }

    #[test]
    fn thread_counts_are_clamped_to_the_work() {
        assert_eq!(thread_count(3, 7), 3);
        assert_eq!(thread_count(8, 2), 2);
        assert_eq!(thread_count(5, 0), 1);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(thread_count(0, 10_000), cores.min(10_000));
    }
}
