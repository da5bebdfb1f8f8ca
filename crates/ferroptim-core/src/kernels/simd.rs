//! Run-time SIMD dispatch.
//!
//! Kernel bodies are ordinary `#[inline(always)]` loops. [`dispatch`] inlines
//! them into a wrapper compiled with `#[target_feature]`, so LLVM vectorizes
//! the same source for AVX-512, AVX2+FMA or the baseline target, chosen once
//! from the CPU the process runs on. The wheel never depends on the build
//! machine's CPU.

use std::sync::atomic::{AtomicU8, Ordering};

use super::Real;

#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    /// The target's baseline (SSE2 on x86-64, NEON on aarch64).
    Baseline = 1,
    Avx2 = 2,
    Avx512 = 3,
}

impl SimdLevel {
    pub fn name(self) -> &'static str {
        match self {
            SimdLevel::Baseline if cfg!(target_arch = "aarch64") => "neon",
            SimdLevel::Baseline if cfg!(target_arch = "x86_64") => "sse2",
            SimdLevel::Baseline => "scalar",
            SimdLevel::Avx2 => "avx2",
            SimdLevel::Avx512 => "avx512",
        }
    }

    pub fn parse(name: &str) -> Option<SimdLevel> {
        match name.to_ascii_lowercase().as_str() {
            "baseline" | "scalar" | "sse2" | "neon" => Some(SimdLevel::Baseline),
            "avx2" => Some(SimdLevel::Avx2),
            "avx512" => Some(SimdLevel::Avx512),
            _ => None,
        }
    }
}

/// 0 = not detected yet.
static LEVEL: AtomicU8 = AtomicU8::new(0);

/// The best level this CPU supports.
pub fn detect() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            return SimdLevel::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            return SimdLevel::Avx2;
        }
    }
    SimdLevel::Baseline
}

/// The level in use: the detected one, unless lowered by [`set_level`].
#[inline]
pub fn level() -> SimdLevel {
    match LEVEL.load(Ordering::Relaxed) {
        3 => SimdLevel::Avx512,
        2 => SimdLevel::Avx2,
        1 => SimdLevel::Baseline,
        _ => {
            let detected = detect();
            LEVEL.store(detected as u8, Ordering::Relaxed);
            detected
        }
    }
}

/// Caps the level (for tests and benchmarks of the slower paths). Asking for
/// more than the CPU has gives what it has; returns the level now in use.
pub fn set_level(wanted: SimdLevel) -> SimdLevel {
    let chosen = wanted.min(detect());
    LEVEL.store(chosen as u8, Ordering::Relaxed);
    chosen
}

/// Runs `body` compiled for the best available instruction set.
///
/// Pass an `#[inline(always)]` closure: the features only apply to code
/// inlined into the wrapper, and LLVM declines to inline a large closure
/// by itself (the kernel then silently runs as baseline SSE2 code).
#[inline(always)]
pub fn dispatch<R>(body: impl FnOnce() -> R) -> R {
    match level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `level()` only reports features the CPU has.
        SimdLevel::Avx512 => unsafe { with_avx512(body) },
        #[cfg(target_arch = "x86_64")]
        SimdLevel::Avx2 => unsafe { with_avx2(body) },
        _ => body(),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn with_avx512<R>(body: impl FnOnce() -> R) -> R {
    body()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn with_avx2<R>(body: impl FnOnce() -> R) -> R {
    body()
}

/// Asks the CPU to start loading `bytes` bytes from `ptr` into cache, so
/// memory arrives while other work computes: blocks ahead in the mixed
/// pass (a lot of work per byte, the hardware prefetcher falls behind) and
/// the next small tensors of a multi-tensor step (a few cache lines each, at
/// scattered addresses: too short for the hardware prefetcher to learn).
#[inline(always)]
pub fn prefetch(ptr: *const u8, bytes: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let mut at = 0;
        while at < bytes {
            // SAFETY: a prefetch is a hint: it never faults, even on an
            // address outside any allocation.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(ptr.wrapping_add(at) as *const i8) };
            at += 64;
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (ptr, bytes);
}

/// Elements per block of [`blocked!`](crate::blocked): one AVX-512 register of f32.
pub const BLOCK: usize = 16;

/// A slice [`blocked!`](crate::blocked) walks block by block: `&[T]` or
/// `&mut [T]`. An empty slice (a state slot the rule does not use) reads as
/// zeros and ignores writes.
pub trait Lanes {
    type Elem: Real;
    fn load(&self, lo: usize) -> [Self::Elem; BLOCK];
    fn store(&mut self, lo: usize, values: &[Self::Elem; BLOCK]);
}

#[inline(always)]
fn load_block<T: Real>(slice: &[T], lo: usize) -> [T; BLOCK] {
    let mut out = [T::ZERO; BLOCK];
    if !slice.is_empty() {
        out.copy_from_slice(&slice[lo..lo + BLOCK]);
    }
    out
}

impl<T: Real> Lanes for &[T] {
    type Elem = T;
    #[inline(always)]
    fn load(&self, lo: usize) -> [T; BLOCK] {
        load_block(self, lo)
    }
    #[inline(always)]
    fn store(&mut self, _lo: usize, _values: &[T; BLOCK]) {}
}

impl<T: Real> Lanes for &mut [T] {
    type Elem = T;
    #[inline(always)]
    fn load(&self, lo: usize) -> [T; BLOCK] {
        load_block(self, lo)
    }
    #[inline(always)]
    fn store(&mut self, lo: usize, values: &[T; BLOCK]) {
        if !self.is_empty() {
            self[lo..lo + BLOCK].copy_from_slice(values);
        }
    }
}

/// Runs an element-wise loop body over the first `n` elements of the named
/// slices (`$i` indexes them inside the body).
///
/// Left to itself, LLVM vectorizes loops holding a square root or a division
/// with 128-bit vectors even where AVX-512 is enabled, and guards them with
/// run-time overlap checks; Adam then becomes compute-bound. Here each
/// [`BLOCK`] of every slice is copied into a local array (registers, which
/// cannot overlap), the body runs over the arrays with a compile-time trip
/// count that LLVM packs into full-width vectors, and the arrays of the
/// writable slices are stored back. The remainder runs the body on the
/// slices themselves, one element at a time.
#[macro_export]
macro_rules! blocked {
    ($n:expr; $($slice:ident),+; |$i:ident| $body:block) => {{
        use $crate::kernels::simd::{Lanes as _, BLOCK};
        let n: usize = $n;
        $( #[allow(unused_mut)] let mut $slice = $slice; )+
        let mut base = 0usize;
        while base + BLOCK <= n {
            let arrays = {
                $( #[allow(unused_mut)] let mut $slice = $slice.load(base); )+
                for $i in 0..BLOCK $body
                $crate::blocked!(@nest $($slice),+)
            };
            // The names are the slices again: store the arrays back.
            $crate::blocked!(@store base, arrays; $($slice),+);
            // Emits no instruction, but keeps LLVM from vectorizing this
            // outer loop across blocks with gathers and scatters, which it
            // otherwise does for cheap bodies such as SGD's.
            ::std::sync::atomic::compiler_fence(::std::sync::atomic::Ordering::SeqCst);
            base += BLOCK;
        }
        for $i in base..n $body
    }};
    (@nest $first:ident $(, $rest:ident)*) => { ($first, $crate::blocked!(@nest $($rest),*)) };
    (@nest) => { () };
    (@store $base:ident, $arrays:expr; $first:ident $(, $rest:ident)*) => {
        let (head, tail) = $arrays;
        $first.store($base, &head);
        $crate::blocked!(@store $base, tail; $($rest),*);
    };
    (@store $base:ident, $arrays:expr;) => { let () = $arrays; };
}
