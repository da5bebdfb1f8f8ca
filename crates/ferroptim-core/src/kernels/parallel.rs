//! The thread pool and how work is split across it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

/// Below this many elements a step runs on the calling thread: waking the
/// pool costs more than the update itself.
pub const PARALLEL_MIN_ELEMS: usize = 1 << 16;
/// Work items are never smaller than this, so per-item overhead stays small.
const MIN_CHUNK: usize = 1 << 13;
/// ...and never larger than this, so the threads stay balanced.
const MAX_CHUNK: usize = 1 << 18;

/// More threads than this is a typo, not a setting (and would take seconds to spawn).
pub const MAX_THREADS: usize = 1024;

static POOL: OnceLock<RwLock<Arc<ThreadPool>>> = OnceLock::new();

fn default_threads() -> usize {
    std::env::var("FERROPTIM_NUM_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0 && n <= MAX_THREADS)
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
}

fn build(threads: usize) -> Result<Arc<ThreadPool>, String> {
    ThreadPoolBuilder::new()
        .num_threads(threads)
        .thread_name(|i| format!("ferroptim-{i}"))
        .build()
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn cell() -> &'static RwLock<Arc<ThreadPool>> {
    POOL.get_or_init(|| {
        let pool = build(default_threads())
            .or_else(|_| build(1))
            .expect("a one-thread pool can always be built");
        RwLock::new(pool)
    })
}

/// The pool the kernels run on.
pub fn pool() -> Arc<ThreadPool> {
    cell().read().unwrap_or_else(|e| e.into_inner()).clone()
}

pub fn num_threads() -> usize {
    pool().current_num_threads()
}

/// Replaces the pool. Steps already running finish on the old one.
pub fn set_num_threads(threads: usize) -> Result<(), String> {
    if threads == 0 || threads > MAX_THREADS {
        return Err(format!(
            "the number of threads must be in 1..={MAX_THREADS}, got {threads}"
        ));
    }
    let pool = build(threads)?;
    *cell().write().unwrap_or_else(|e| e.into_inner()) = pool;
    Ok(())
}

/// How many elements one work item covers for `total` elements on `threads`
/// threads. Purely a function of its arguments.
pub fn chunk_len(total: usize, threads: usize) -> usize {
    (total / (threads.max(1) * 4)).clamp(MIN_CHUNK, MAX_CHUNK)
}

/// Calls `body(start, end)` over `[0, total)` cut into chunks, in parallel
/// when the work is large enough.
///
/// The calling thread works too, as OpenMP's master thread does: it wakes
/// `threads − 1` pool workers and starts on the chunks at once. Everyone
/// claims the next chunk from one shared counter, so a worker that wakes late
/// (a futex wake-up costs tens of µs on a virtual machine) finds less left to
/// do instead of holding up the step. Which thread runs a chunk never changes
/// the result: chunks are element-wise and disjoint.
pub fn for_each_range(total: usize, body: impl Fn(usize, usize) + Sync) {
    for_each_range_aligned(total, 1, body)
}

/// [`for_each_range`] with every chunk boundary a multiple of `align`.
pub fn for_each_range_aligned(total: usize, align: usize, body: impl Fn(usize, usize) + Sync) {
    let pool = pool();
    let threads = pool.current_num_threads();
    if total < PARALLEL_MIN_ELEMS || threads == 1 {
        body(0, total);
        return;
    }
    let chunk = chunk_len(total, threads).next_multiple_of(align);
    let items = total.div_ceil(chunk);
    let next = AtomicUsize::new(0);
    let work = || loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= items {
            break;
        }
        body(k * chunk, ((k + 1) * chunk).min(total));
    };
    let helpers = (threads - 1).min(items - 1);
    pool.in_place_scope(|scope| {
        for _ in 0..helpers {
            scope.spawn(|_| work());
        }
        work();
    });
}
