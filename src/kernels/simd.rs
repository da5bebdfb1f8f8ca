//! Run-time SIMD dispatch.
//!
//! Kernel bodies are ordinary `#[inline(always)]` loops. [`dispatch`] inlines
//! them into a wrapper compiled with `#[target_feature]`, so LLVM vectorizes
//! the same source for AVX-512, AVX2+FMA or the baseline target, chosen once
//! from the CPU the process runs on. The wheel never depends on the build
//! machine's CPU.

use std::sync::atomic::{AtomicU8, Ordering};

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
