// The element-wise unit: RMSNorm fused with per-token int8 quantisation into the TLMM's group layout,
// the final norm, the activation of gate x up, and fp16 rounding for the KV cache (fp16.h).
// Numerics follow the numpy reference (tellme.models.reference): float32 throughout, round half to even
// for int8 (std::rint in the default rounding mode), weight * (x * inv_rms) in that order. Sums of
// squares are float32 partial sums (S rotating sets of V lanes, added as a tree at the end), so they
// differ from numpy's pairwise summation by float rounding only.
//
// V lanes per cycle: V = 15 (five groups of three: a whole set of xq a cycle) or 3 (one group, for small
// devices); quantised values land in whole groups of xq.
#ifndef TELLME_ELEMENTWISE_H
#define TELLME_ELEMENTWISE_H

#include <cmath>

#include "common.h"

namespace tellme {

static const float ACT_QMAX = 127.0f;
static const float ACT_SCALE_FLOOR = 1e-5f;

enum activation_t { ACT_RELU2 = 0, ACT_SILU = 1 };

// Every element-wise parameter; a design's elementwise_config derives from this and overrides what differs.
struct elementwise_defaults {
    static const unsigned lanes = 15;  // V: values per cycle (five groups of three)
    static const unsigned partials = 8;  // S: rotating partial-sum sets, at least the float adder's latency
};


// The sum of x[0..N) as a fixed tree: the first half's sum plus the second half's, recursively. A pure
// function of N, so the C simulation and the hardware add in the same order.
// Indices only, no pointer arithmetic, so it maps onto a completely partitioned array (UG1399).
template <unsigned N, unsigned LO = 0> struct tree_sum {
    template <unsigned T> static float run(const float (&x)[T]) {
#pragma HLS INLINE
        return tree_sum<N / 2, LO>::run(x) + tree_sum<N - N / 2, LO + N / 2>::run(x);
    }
};
template <unsigned LO> struct tree_sum<1, LO> {
    template <unsigned T> static float run(const float (&x)[T]) {
#pragma HLS INLINE
        return x[LO];
    }
};

// The maximum of x[LO .. LO+N) as a tree (no rounding: any order gives the same value).
template <unsigned N, unsigned LO = 0> struct tree_max {
    template <class T, unsigned LEN> static T run(const T (&x)[LEN]) {
#pragma HLS INLINE
        const T a = tree_max<N / 2, LO>::run(x), b = tree_max<N - N / 2, LO + N / 2>::run(x);
        return a > b ? a : b;
    }
};
template <unsigned LO> struct tree_max<1, LO> {
    template <class T, unsigned LEN> static T run(const T (&x)[LEN]) {
#pragma HLS INLINE
        return x[LO];
    }
};

// The tree of S x V partial sums, once per vector: a few shared adders suffice (not one per node).
template <unsigned N> float reduce_partials(const float (&flat)[N]) {
#pragma HLS INLINE off
#pragma HLS ALLOCATION operation instances = fadd limit = 4
    return tree_sum<N>::run(flat);
}

// Sum of x[i]^2 over i < n: V lanes a cycle into S rotating partial sets (a value lands in the set it
// left S cycles before, so the float adder's latency never stalls the loop), then a tree.
// x[row] from `offset`, a multiple of V: indices are written V * (base + i) + v, so that each lane v
// reads its own bank of the cyclic partition (factor V) whatever the offset.
template <class C, unsigned ROWS, unsigned DIM>
float sum_of_squares(const float x[ROWS][DIM], unsigned row, unsigned offset, unsigned n) {
    const unsigned V = C::lanes, S = C::partials;
    const unsigned base = offset / V;
    const unsigned max_iters = DIM / C::lanes;
    (void)max_iters;
    float part[S][V];
#pragma HLS ARRAY_PARTITION variable = part complete dim = 0
INIT_PARTIALS:
    for (unsigned s = 0; s < S; s++)
        for (unsigned v = 0; v < V; v++) part[s][v] = 0.0f;
SUM_SQUARES:
    for (unsigned i = 0; i < (n + V - 1) / V; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
        TELLME_COUNT("sum_squares");
        float next[V];
#pragma HLS ARRAY_PARTITION variable = next complete
        for (unsigned v = 0; v < V; v++) {
#pragma HLS UNROLL
            const unsigned idx = i * V + v;
            const float xv = idx < n ? x[row][V * (base + i) + v] : 0.0f;
            next[v] = part[S - 1][v] + xv * xv;
        }
        for (unsigned s = S - 1; s > 0; s--)
            for (unsigned v = 0; v < V; v++) part[s][v] = part[s - 1][v];
        for (unsigned v = 0; v < V; v++) part[0][v] = next[v];
    }
    float flat[S * V];
#pragma HLS ARRAY_PARTITION variable = flat complete
    for (unsigned s = 0; s < S; s++)
        for (unsigned v = 0; v < V; v++) flat[s * V + v] = part[s][v];
    return reduce_partials<S * V>(flat);
}

// 1 / sqrt(mean(x^2) + eps) as the reference computes it: float32(1) / sqrt(variance + eps).
inline float inv_rms(float sum_sq, unsigned n, float eps) {
    const float variance = sum_sq / float(n);
    return 1.0f / std::sqrt(variance + eps);
}

// |x|'s bit pattern: ordered as the values are (x >= 0), so a maximum is a one-cycle integer compare.
inline uint32_t abs_bits(float x) { return float_to_bits(x) & 0x7FFFFFFFu; }

// y = weight * (x * inv) for i < n; returns max |y|. x[row] from `offset`, the weight from w[0][woffset]:
// both multiples of V, so lanes keep their banks. The maximum is taken on the bit patterns of |y| as
// integers (ordered as the floats are, for values >= 0): a one-cycle compare, so each lane keeps a running
// maximum at II=1, and a tree of V integer compares ends it (exact in any order).
template <class C, unsigned ROWS, unsigned DIM, unsigned WDIM, unsigned YDIM>
float normalize(const float x[ROWS][DIM], unsigned row, unsigned offset, const float w[1][WDIM], unsigned woffset,
                float inv, unsigned n, float y[1][YDIM]) {
    const unsigned V = C::lanes;
    const unsigned base = offset / V, wbase = woffset / V;
    const unsigned max_iters = YDIM / C::lanes;
    (void)max_iters;
    uint32_t peak[V];
#pragma HLS ARRAY_PARTITION variable = peak complete
    for (unsigned v = 0; v < V; v++) peak[v] = 0;
NORMALIZE:
    for (unsigned i = 0; i < (n + V - 1) / V; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
        TELLME_COUNT("normalize");
        for (unsigned v = 0; v < V; v++) {
#pragma HLS UNROLL
            const unsigned idx = i * V + v;
            if (idx < n) {
                const float value = w[0][V * (wbase + i) + v] * (x[row][V * (base + i) + v] * inv);
                y[0][idx] = value;
                const uint32_t bits = abs_bits(value);
                peak[v] = bits > peak[v] ? bits : peak[v];
            }
        }
    }
    return bits_to_float(tree_max<V>::run(peak));
}

// s = 127 / max(peak, 1e-5); xq = clamp(rint(y * s), -128, 127) in groups of three (zero past n).
template <class C, unsigned DIM, unsigned B, unsigned MAX_GROUPS>
float quantize(const float y[1][DIM], float peak, unsigned n, unsigned groups, int8_t xq[B][MAX_GROUPS / 5][5][3],
               unsigned tok) {
    const unsigned V = C::lanes, GU = C::lanes / 3;  // groups a cycle: 5 (a whole set of xq) or 1
    static_assert(GU == 5 || GU == 1, "the element-wise lanes are 15 or 3");
    const unsigned max_iters = MAX_GROUPS / GU;
    (void)max_iters;
    const float scale = ACT_QMAX / (peak > ACT_SCALE_FLOOR ? peak : ACT_SCALE_FLOOR);
QUANTIZE:
    for (unsigned i = 0; i < (groups + GU - 1) / GU; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
        TELLME_COUNT("quantize");
        for (unsigned u = 0; u < GU; u++) {
#pragma HLS UNROLL
            const unsigned g = GU * i + u;
            for (unsigned k = 0; k < 3; k++) {
#pragma HLS UNROLL
                const unsigned idx = V * i + 3 * u + k;
                float r = idx < n ? std::rint(y[0][idx] * scale) : 0.0f;
                r = r < -128.0f ? -128.0f : (r > 127.0f ? 127.0f : r);
                if (g < groups) {
                    if (GU == 5) xq[tok][i][u][k] = int8_t(r);  // a whole set: every bank, its own
                    else xq[tok][g / 5][g % 5][k] = int8_t(r);  // one group: one write a bank at most
                }
            }
        }
    }
    return scale;
}

// The fused unit in front of every ternary matmul: RMSNorm of x[row] from `offset` (n values) with
// the weight at w[0][woffset], then int8 quantisation into xq[tok] (groups of three, `groups` of them:
// the matrix's words x 25). Returns s_x; y holds the normalised values (the final norm's output).
template <class C, unsigned ROWS, unsigned DIM, unsigned WDIM, unsigned YDIM, unsigned B, unsigned MAX_GROUPS>
float norm_quant(const float x[ROWS][DIM], unsigned row, unsigned offset, const float w[1][WDIM],
                 unsigned woffset, float eps, unsigned n, unsigned groups, float y[1][YDIM],
                 int8_t xq[B][MAX_GROUPS / 5][5][3], unsigned tok) {
    const float inv = inv_rms(sum_of_squares<C, ROWS, DIM>(x, row, offset, n), n, eps);
    const float peak = normalize<C, ROWS, DIM, WDIM, YDIM>(x, row, offset, w, woffset, inv, n, y);
    return quantize<C, YDIM, B, MAX_GROUPS>(y, peak, n, groups, xq, tok);
}

inline float activate(float g, int act) {
    if (act == ACT_RELU2) {
        const float r = g > 0.0f ? g : 0.0f;
        return r * r;
    }
    return g / (1.0f + exp_poly(-g));
}

}  // namespace tellme

#endif
