// ferroptim's CUDA kernels: one launch per step over every tensor.
//
// The host (engine.py) lays the step out in four small device buffers:
//   tab    int64, 8 per tensor: param, grad, slot0, slot1, slot2, average
//          (addresses; 0 when unused), numel, offset of its scalars in `sc`
//   chunks int64, 2 per block: tensor index, first element
//   sc     float64 per-tensor scalars, as the Rust core lays them out (the engine
//          class's cuda_scalars, from each optimizer's `flat` in
//          crates/ferroptim-core/src/kernels/<rule>.rs): the prelude (grad sign,
//          coupled L2, L1, decoupled decay, average weight), then the rule's
//   glob   float64, device-written: grad multiplier (clipping x accumulation),
//          clip value (inf when off), skip flag (non-finite grads), grad norm
// Every block updates one chunk of one tensor, so thousands of small tensors
// cost one launch, and one large tensor spreads over many blocks.
//
// The arithmetic is the CPU kernels', operation for operation, and the engine
// compiles this file with --fmad=false: no contraction into fused multiply-adds,
// so a GPU step gives the same bits as the CPU step.
//
// The same source also builds as host C++ (FO_EMULATE, see emulate.py): every
// block then runs with one thread. The tests use it to check this arithmetic
// where no GPU exists; the GPU tests run the real thing.

#ifdef FO_EMULATE
#include <cmath>
struct fo_dim3 { unsigned x, y, z; };
extern "C" {
fo_dim3 threadIdx = {0, 0, 0};
fo_dim3 blockIdx = {0, 0, 0};
fo_dim3 blockDim = {1, 1, 1};
fo_dim3 gridDim = {1, 1, 1};
void fo_emu_set_block(unsigned block, unsigned grid) {
    blockIdx.x = block;
    gridDim.x = grid;
}
}
#define __global__
#define FO_DEVICE inline
#define FO_SHARED static
#define FO_SYNC()
using std::sqrt;
using std::fabs;
#define FO_NAN std::nan("")
#else
#define FO_DEVICE __device__ __forceinline__
#define FO_SHARED __shared__
#define FO_SYNC() __syncthreads()
#define FO_NAN __longlong_as_double(0x7ff8000000000000LL)
#endif

#define FO_TAB 8
#define FO_PRE 5
#define FO_THREADS_MAX 256

typedef long long i64;

template <typename T> FO_DEVICE T fo_sign(T x) {
    return x > T(0) ? T(1) : (x < T(0) ? T(-1) : x * T(0));
}

// torch.maximum for the non-NaN case (the CPU kernels' max_val).
template <typename T> FO_DEVICE T fo_max(T a, T b) { return b > a ? b : a; }

// float16 as raw bits, converted by hand (IEEE binary16, round to nearest
// even), so the file needs no CUDA header and builds the same on the host.
struct fo_half {
    unsigned short bits;
};

FO_DEVICE float fo_half_to_float(unsigned short h) {
    unsigned int sign = (unsigned int)(h & 0x8000u) << 16;
    unsigned int exp = (h >> 10) & 0x1fu;
    unsigned int man = h & 0x3ffu;
    float out;
    if (exp == 0) {  // zero or subnormal: man * 2^-24, exact in float
        out = (float)man * 5.9604644775390625e-08f;
        return sign ? -out : out;
    }
    unsigned int bits = exp == 31 ? (sign | 0x7f800000u | (man << 13))
                                  : (sign | ((exp + 112u) << 23) | (man << 13));
    union { unsigned int u; float f; } v;
    v.u = bits;
    return v.f;
}

FO_DEVICE unsigned short fo_float_to_half(float f) {
    union { float f; unsigned int u; } v;
    v.f = f;
    unsigned int x = v.u;
    unsigned short sign = (unsigned short)((x >> 16) & 0x8000u);
    unsigned int abs = x & 0x7fffffffu;
    if (abs >= 0x7f800000u) {  // inf or NaN (NaN stays NaN)
        return (unsigned short)(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0u));
    }
    if (abs >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u);  // rounds past 65504
    if (abs < 0x38800000u) {  // below 2^-14: subnormal half, round to nearest even
        union { unsigned int u; float f; } a;
        a.u = abs;
        float scaled = a.f * 16777216.0f;  // exact: 2^24 times a small float
        unsigned int q = (unsigned int)scaled;
        float rest = scaled - (float)q;
        if (rest > 0.5f || (rest == 0.5f && (q & 1u))) q += 1;
        return (unsigned short)(sign | q);
    }
    unsigned int man = abs & 0x7fffffu;
    unsigned int half = (((abs >> 23) - 112u) << 10) | (man >> 13);
    unsigned int rest = man & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) half += 1;  // may carry into exp
    return (unsigned short)(sign | half);
}

FO_DEVICE double fo_value(float x) { return x; }
FO_DEVICE double fo_value(double x) { return x; }
FO_DEVICE double fo_value(fo_half x) { return fo_half_to_float(x.bits); }

// The engine guarantees no buffer of a step overlaps another (params,
// grads, state, averages): __restrict__ lets the compiler batch the loads of
// consecutive iterations instead of waiting on every store.
template <typename T> struct Slots {
    T* __restrict__ s0;
    T* __restrict__ s1;
    T* __restrict__ s2;
};

// ---------------------------------------------------------------- rules
// apply(r, g, p, slots, i) -> new param; r points at the rule's scalars.

struct Sgd {  // mode, nesterov, momentum, 1 - dampening, -lr
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        int mode = (int)r[0];
        T d = g;
        if (mode != 0) {
            T b = mode == 1 ? g : s.s0[i] * T(r[2]) + T(r[3]) * g;
            s.s0[i] = b;
            d = r[1] != 0.0 ? g + T(r[2]) * b : b;
        }
        return p + T(r[4]) * d;
    }
};

struct Adam {  // amsgrad, 1 - b1, b2, 1 - b2, -lr/bc1, sqrt(bc2), eps
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        T m = s.s0[i] + T(r[1]) * (g - s.s0[i]);
        T v = s.s1[i] * T(r[2]) + T(r[3]) * g * g;
        s.s0[i] = m;
        s.s1[i] = v;
        T second = v;
        if (r[0] != 0.0) {
            second = fo_max(s.s2[i], v);
            s.s2[i] = second;
        }
        T denom = sqrt(second) / T(r[5]) + T(r[6]);
        return p + T(r[4]) * m / denom;
    }
};

struct Rmsprop {  // centered, momentum?, alpha, 1 - alpha, eps, momentum, -lr
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        T sq = s.s0[i] * T(r[2]) + T(r[3]) * g * g;
        s.s0[i] = sq;
        T avg;
        if (r[0] != 0.0) {
            T a = s.s2[i] + T(r[3]) * (g - s.s2[i]);
            s.s2[i] = a;
            avg = sqrt(sq + T(-1) * a * a);
        } else {
            avg = sqrt(sq);
        }
        avg = avg + T(r[4]);
        if (r[1] != 0.0) {
            T b = s.s1[i] * T(r[5]) + g / avg;
            s.s1[i] = b;
            return p + T(r[6]) * b;
        }
        return p + T(r[6]) * g / avg;
    }
};

struct Adagrad {  // fresh, initial accumulator, -clr, eps
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        T prev = r[0] != 0.0 ? T(r[1]) : s.s0[i];
        T acc = prev + g * g;
        s.s0[i] = acc;
        return p + T(r[2]) * g / (sqrt(acc) + T(r[3]));
    }
};

struct Adadelta {  // rho, 1 - rho, eps, -lr
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        T sq = s.s0[i] * T(r[0]) + T(r[1]) * g * g;
        s.s0[i] = sq;
        T std_ = sqrt(sq + T(r[2]));
        T delta = sqrt(s.s1[i] + T(r[2])) / std_ * g;
        s.s1[i] = s.s1[i] * T(r[0]) + T(r[1]) * delta * delta;
        return p + T(r[3]) * delta;
    }
};

struct Adamax {  // 1 - b1, b2, eps, -lr/bc1
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        T m = s.s0[i] + T(r[0]) * (g - s.s0[i]);
        s.s0[i] = m;
        T u = fo_max(s.s1[i] * T(r[1]), T(fabs(g)) + T(r[2]));
        s.s1[i] = u;
        return p + T(r[3]) * m / u;
    }
};

struct Nadam {  // 1 - b1, b2, 1 - b2, bc2, eps, grad coef, avg coef
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        T m = s.s0[i] + T(r[0]) * (g - s.s0[i]);
        T v = s.s1[i] * T(r[1]) + T(r[2]) * g * g;
        s.s0[i] = m;
        s.s1[i] = v;
        T denom = sqrt(v / T(r[3])) + T(r[4]);
        p = p + T(r[5]) * g / denom;
        return p + T(r[6]) * m / denom;
    }
};

struct Radam {  // rectified, 1 - b1, b2, 1 - b2, bc1, lr, sqrt(bc2), eps, rect
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        T m = s.s0[i] + T(r[1]) * (g - s.s0[i]);
        T v = s.s1[i] * T(r[2]) + T(r[3]) * g * g;
        s.s0[i] = m;
        s.s1[i] = v;
        T corrected = m / T(r[4]);
        T step;
        if (r[0] != 0.0) {
            T adaptive = T(r[6]) / (sqrt(v) + T(r[7]));
            step = corrected * T(r[5]) * adaptive * T(r[8]);
        } else {
            step = corrected * T(r[5]);
        }
        return p - step;
    }
};

struct Lion {  // b1, 1 - b1, b2, 1 - b2, -lr
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        T c = s.s0[i] * T(r[0]) + T(r[1]) * g;
        s.s0[i] = s.s0[i] * T(r[2]) + T(r[3]) * g;
        return p + T(r[4]) * fo_sign(c);
    }
};

struct Rprop {  // fresh, lr, eta-, eta+, min step, max step
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        T product = g * s.s0[i];
        T d = r[0] != 0.0 ? T(r[1]) : s.s1[i];
        // NaN keeps the product, as torch's sign does.
        T factor = product > T(0) ? T(r[3])
                 : product < T(0) ? T(r[2])
                 : product == T(0) ? T(1) : product;
        d = d * factor;
        d = d > T(r[5]) ? T(r[5]) : (d < T(r[4]) ? T(r[4]) : d);
        s.s1[i] = d;
        if (product < T(0)) g = T(0);
        s.s0[i] = g;
        return p - fo_sign(g) * d;
    }
};

struct Asgd {  // 1 - lambd * eta, -eta, mu, mu == 1 (the average is a copy)
    template <typename T> FO_DEVICE static T apply(const double* r, T g, T p, Slots<T> s, i64 i) {
        p = p * T(r[0]);
        p = p + T(r[1]) * g;
        s.s0[i] = r[3] != 0.0 ? p : s.s0[i] + (p - s.s0[i]) * T(r[2]);
        return p;
    }
};

// ---------------------------------------------------------------- step

template <typename T, typename Rule>
FO_DEVICE void fo_step(const i64* tab, const i64* chunks, const double* sc, const double* glob,
                       int chunk) {
    if (glob[2] != 0.0) return;  // non-finite grads: the step is skipped
    const i64* c = chunks + 2 * (i64)blockIdx.x;
    const i64* t = tab + FO_TAB * c[0];
    i64 lo = c[1];
    i64 hi = lo + chunk < t[6] ? lo + chunk : t[6];
    T* __restrict__ param = (T*)t[0];
    const T* __restrict__ grad = (const T*)t[1];
    Slots<T> slots = {(T*)t[2], (T*)t[3], (T*)t[4]};
    T* __restrict__ average = (T*)t[5];
    const double* s = sc + t[7];
    const T scale = T(glob[0]), clip = T(glob[1]);
    const T grad_sign = T(s[0]), coupled = T(s[1]), l1 = T(s[2]), decay = T(s[3]);
    const T average_weight = T(s[4]);
    const bool regularize = s[1] != 0.0 || s[2] != 0.0;
    for (i64 i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        T g = grad[i] * scale;
        g = g > clip ? clip : (g < -clip ? -clip : g);
        T p = param[i];
        g = g * grad_sign;
        if (regularize) g = g + coupled * p + l1 * fo_sign(p);
        p = p * decay;
        p = Rule::template apply<T>(s + FO_PRE, g, p, slots, i);
        param[i] = p;
        if (average) average[i] = average[i] + average_weight * (p - average[i]);
    }
}

// float16 params: state and master weights in float32 (the master in the
// average slot). A param element that no longer equals its rounded master
// was written by the user since the last step: it becomes the new master.
template <typename Rule>
FO_DEVICE void fo_step_half(const i64* tab, const i64* chunks, const double* sc,
                            const double* glob, int chunk) {
    if (glob[2] != 0.0) return;
    const i64* c = chunks + 2 * (i64)blockIdx.x;
    const i64* t = tab + FO_TAB * c[0];
    i64 lo = c[1];
    i64 hi = lo + chunk < t[6] ? lo + chunk : t[6];
    unsigned short* __restrict__ param = (unsigned short*)t[0];
    const unsigned short* __restrict__ grad = (const unsigned short*)t[1];
    Slots<float> slots = {(float*)t[2], (float*)t[3], (float*)t[4]};
    float* __restrict__ master = (float*)t[5];
    const double* s = sc + t[7];
    const float scale = float(glob[0]), clip = float(glob[1]);
    const float grad_sign = float(s[0]), coupled = float(s[1]), l1 = float(s[2]);
    const float decay = float(s[3]);
    const bool regularize = s[1] != 0.0 || s[2] != 0.0;
    for (i64 i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        float g = fo_half_to_float(grad[i]) * scale;
        g = g > clip ? clip : (g < -clip ? -clip : g);
        float p = master[i];
        unsigned short stored = param[i];
        if (fo_float_to_half(p) != stored) p = fo_half_to_float(stored);
        g = g * grad_sign;
        if (regularize) g = g + coupled * p + l1 * fo_sign(p);
        p = p * decay;
        p = Rule::template apply<float>(s + FO_PRE, g, p, slots, i);
        master[i] = p;
        param[i] = fo_float_to_half(p);
    }
}

#define FO_ARGS const i64 *tab, const i64 *chunks, const double *sc, const double *glob, int chunk
#define FO_RULE(name, Rule)                                                       \
    extern "C" __global__ void name##_f32(FO_ARGS) {                              \
        fo_step<float, Rule>(tab, chunks, sc, glob, chunk);                       \
    }                                                                             \
    extern "C" __global__ void name##_f64(FO_ARGS) {                              \
        fo_step<double, Rule>(tab, chunks, sc, glob, chunk);                      \
    }                                                                             \
    extern "C" __global__ void name##_f16(FO_ARGS) {                              \
        fo_step_half<Rule>(tab, chunks, sc, glob, chunk);                         \
    }

FO_RULE(sgd, Sgd)
FO_RULE(adam, Adam)
FO_RULE(rmsprop, Rmsprop)
FO_RULE(adagrad, Adagrad)
FO_RULE(adadelta, Adadelta)
FO_RULE(adamax, Adamax)
FO_RULE(nadam, Nadam)
FO_RULE(radam, Radam)
FO_RULE(lion, Lion)
FO_RULE(rprop, Rprop)
FO_RULE(asgd, Asgd)

// ---------------------------------------------------------------- grad norm
// Pass 1: per chunk, Σ g² in float64 and max |g| (NaN-propagating). Pass 2
// (one block) reduces the partials.

// One thread's running (Σ, max) with NaN remembered; then the block's, reduced
// in a fixed tree order so the result has the same bits on every run.
FO_DEVICE void fo_accumulate(double& sum, double& mx, bool& nan, double add, double candidate) {
    sum += add;
    nan = nan || candidate != candidate;
    mx = candidate > mx ? candidate : mx;
}

FO_DEVICE void fo_block_reduce(double& sum, double& mx, bool nan) {
    FO_SHARED double sums[FO_THREADS_MAX];
    FO_SHARED double maxes[FO_THREADS_MAX];
    sums[threadIdx.x] = sum;
    maxes[threadIdx.x] = nan ? FO_NAN : mx;
    FO_SYNC();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) {
            sums[threadIdx.x] += sums[threadIdx.x + half];
            double a = maxes[threadIdx.x], b = maxes[threadIdx.x + half];
            maxes[threadIdx.x] = (a != a || b != b) ? FO_NAN : (b > a ? b : a);
        }
        FO_SYNC();
    }
    sum = sums[0];
    mx = maxes[0];
}

template <typename T>
FO_DEVICE void fo_norm_partials(const i64* tab, const i64* chunks, double* partials, int chunk) {
    const i64* c = chunks + 2 * (i64)blockIdx.x;
    const i64* t = tab + FO_TAB * c[0];
    i64 lo = c[1];
    i64 hi = lo + chunk < t[6] ? lo + chunk : t[6];
    const T* grad = (const T*)t[1];
    double sum = 0.0, mx = 0.0;
    bool nan = false;
    for (i64 i = lo + threadIdx.x; i < hi; i += blockDim.x) {
        double g = fabs(fo_value(grad[i]));
        fo_accumulate(sum, mx, nan, g * g, g);
    }
    fo_block_reduce(sum, mx, nan);
    if (threadIdx.x == 0) {
        partials[2 * (i64)blockIdx.x] = sum;
        partials[2 * (i64)blockIdx.x + 1] = mx;
    }
}

extern "C" __global__ void norm_partials_f32(const i64* tab, const i64* chunks, double* partials,
                                             int chunk) {
    fo_norm_partials<float>(tab, chunks, partials, chunk);
}
extern "C" __global__ void norm_partials_f64(const i64* tab, const i64* chunks, double* partials,
                                             int chunk) {
    fo_norm_partials<double>(tab, chunks, partials, chunk);
}
extern "C" __global__ void norm_partials_f16(const i64* tab, const i64* chunks, double* partials,
                                             int chunk) {
    fo_norm_partials<fo_half>(tab, chunks, partials, chunk);
}
// The conversions, for the tests to check against NumPy's float16.
extern "C" __global__ void half_roundtrip(const float* in, unsigned short* half, float* back,
                                          i64 n) {
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (i64)gridDim.x * blockDim.x) {
        half[i] = fo_float_to_half(in[i]);
        back[i] = fo_half_to_float(half[i]);
    }
}

// Pass 2, one block. opts: [max_norm (<0: no clipping), inf norm?, skip non-finite?,
// host grad scale]. Writes glob: multiplier, (clip value untouched), skip flag, norm.
// A non-finite grad is one whose |g| is not finite: an inf or NaN maximum.
extern "C" __global__ void norm_finish(const double* partials, i64 count, const double* opts,
                                       double* glob) {
    double sum = 0.0, maxabs = 0.0;
    bool nan = false;
    for (i64 k = threadIdx.x; k < count; k += blockDim.x) {
        fo_accumulate(sum, maxabs, nan, partials[2 * k], partials[2 * k + 1]);
    }
    fo_block_reduce(sum, maxabs, nan);
    if (threadIdx.x == 0) {
        // The norm of the grads as the step sees them (host scale: accumulation).
        double norm = (opts[1] != 0.0 ? maxabs : sqrt(sum)) * opts[3];
        bool finite = maxabs - maxabs == 0.0;  // false for inf and NaN
        double multiplier = opts[3];
        if (opts[0] >= 0.0) {
            // torch.nn.utils.clip_grad_norm_'s coefficient, clamped at 1.
            double coef = opts[0] / (norm + 1e-6);
            multiplier *= coef != coef ? coef : (coef < 1.0 ? coef : 1.0);
        }
        glob[0] = multiplier;
        glob[2] = (opts[2] != 0.0 && !finite) ? 1.0 : 0.0;
        glob[3] = norm;
    }
}
