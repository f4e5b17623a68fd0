// On-chip layers for small models: a ternary dense layer by table lookup (TLMM) with its weights in a ROM,
// and RMSNorm, as the hls4ml plugin instantiates them (tellme.hls.hls4ml_plugin). Header-only, for
// Vitis HLS and g++; one call site is one RTL instance.
//
// Ternary dense (BitLinear). Every token is quantised to int8 as the accelerator does (elementwise.h's
// quantize: s_x = 127 / max|x| floored at 1e-5, round half to even, clamp, groups of three). Tokens then
// go through in groups of TP (token lanes): each token's tables (tlmm.h's tlmm_build_table, 5 groups a
// cycle), then one pass over the weights in which every cycle reads index word column c of P rows side
// by side (P = ports) and looks each word up in all TP tables (tlmm_word_sum); a row's int32 sum is
// dequantised when its last word is in: y = float(acc) / (s_x * s_w), float32 as numpy computes it.
//
// Weights. Row r is wpr index words (25 five-bit indices each, the accelerator's stripe word). The ROM
// holds every word as four 32-bit little-endian limbs (hls4ml writes weights as decimal numbers, which
// 32 bits keep exact), in the order [row-step][column][port][limb] with row = row-step * P + port, so the
// P words one cycle reads are adjacent: reshaped cyclically by 4P they are one ROM word. Rows past n_out
// are all-zero words.
//
// RMSNorm. Per token: the sum of squares in V lanes and S rotating partial sets (elementwise.h's
// sum_of_squares), inv = 1 / sqrt(sum / n + eps), y = weight * (x * inv). The weights are IEEE float bits,
// exact whatever hls4ml's number formatting.
//
// The caller moves tokens in and out (io_parallel arrays or io_stream streams): it fills row[0][0..n_in)
// with a token's activations as float and reads y back.
#ifndef TELLME_TLMM_DENSE_H
#define TELLME_TLMM_DENSE_H

#include <cmath>

#include "elementwise.h"
#include "tlmm.h"

namespace tellme {

static const unsigned LIMBS_PER_WORD = WORD_BITS / 32;

// Every on-chip TLMM parameter. A layer's config derives from this and states its shape and scale;
// tlmm_arrays<> reads ports, token_lanes, max_wpr, max_block and tile_words from it.
struct tlmm_dense_defaults : elementwise_defaults {
    static const unsigned n_in = 3;  // K, inputs per token
    static const unsigned n_out = 1;  // N, outputs per token
    static const unsigned n_tokens = 1;  // tokens per call (the leading dimensions of the tensor)
    static const unsigned ports = 1;  // P: rows looked up side by side, one ROM word of P index words a cycle
    static const unsigned token_lanes = 1;  // TP: tokens whose tables each weight word is looked up in
    static const unsigned max_wpr = 1;  // index words per row: ceil(ceil(n_in / 3) / 25)
    static const unsigned max_rows = 1;  // row-steps: ceil(n_out / ports)
    static const unsigned max_block = 1;  // quantised-token slots: token_lanes
    static const unsigned tile_words = 1;  // no tile buffer: the weights are on chip
    static const bool half_table = true;  // 14-entry tables read with a negation, or the full 27 (tlmm.h)
    static constexpr float weight_scale = 1.0f;  // s_w: y = acc / (s_x * s_w)
};

// Every RMSNorm parameter; a layer's config derives from this.
struct rms_norm_defaults : elementwise_defaults {
    static const unsigned n_in = 1;
    static const unsigned n_tokens = 1;
    static constexpr float epsilon = 1e-5f;
};

template <class C> struct tlmm_dense_arrays {
    static const unsigned words = C::max_rows * C::max_wpr * C::ports;  // index words in the ROM
    static const unsigned limbs = words * LIMBS_PER_WORD;
    static const unsigned rows = C::max_rows * C::ports;  // output rows, padded to the ports
    typedef float out_t[C::token_lanes][rows];
};

template <class C> void tlmm_dense_check() {
    static_assert(C::max_wpr * WORD_INDICES * 3 >= C::n_in, "max_wpr words cannot hold n_in inputs");
    static_assert(C::max_rows * C::ports >= C::n_out, "max_rows row-steps of ports rows cannot hold n_out");
    static_assert(C::max_block >= C::token_lanes, "every token lane needs a quantised-token slot");
}

// max |x[0][i]| over i < DIM: V lanes a cycle, each keeping a running maximum of |x|'s bit patterns
// (elementwise.h abs_bits: one-cycle integer compares), then a tree (exact in any order).
template <class C, unsigned DIM> float abs_peak(const float x[1][DIM]) {
    const unsigned V = C::lanes;
    uint32_t peak[V];
#pragma HLS ARRAY_PARTITION variable = peak complete
    for (unsigned v = 0; v < V; v++) peak[v] = 0;
ABS_PEAK:
    for (unsigned i = 0; i < (DIM + V - 1) / V; i++) {
#pragma HLS PIPELINE II = 1
        TELLME_COUNT("abs_peak");
        for (unsigned v = 0; v < V; v++) {
#pragma HLS UNROLL
            const unsigned idx = i * V + v;
            const uint32_t bits = idx < DIM ? abs_bits(x[0][idx]) : 0u;
            peak[v] = bits > peak[v] ? bits : peak[v];
        }
    }
    return bits_to_float(tree_max<V>::run(peak));
}

// One token's activations (row) into quantised-token slot `slot` of xq, zero past n_in; returns s_x.
template <class C>
float tlmm_dense_quantize(const float row[1][C::n_in], unsigned slot, typename tlmm_arrays<C>::xq_t xq) {
    return quantize<C, C::n_in, C::max_block, tlmm_arrays<C>::max_groups>(
        row, abs_peak<C, C::n_in>(row), C::n_in, C::max_wpr * WORD_INDICES, xq, slot);
}

// The 128-bit index word `word` of the ROM as its two 64-bit halves.
template <class C, class W>
inline void tlmm_dense_word(const W w[tlmm_dense_arrays<C>::limbs], unsigned word, uint64_t &lo, uint64_t &hi) {
#pragma HLS INLINE
    const unsigned base = word * LIMBS_PER_WORD;
    lo = uint64_t(w[base]) | (uint64_t(w[base + 1]) << 32);
    hi = uint64_t(w[base + 2]) | (uint64_t(w[base + 3]) << 32);
}

// One group of `active` tokens (quantised in xq slots 0..active-1, scales s_x): their tables, then every
// weight word once, P rows a cycle, each looked up in every active token's tables; y[tl][row].
template <class C, class W>
void tlmm_dense_group(const typename tlmm_arrays<C>::xq_t xq, const float s_x[C::max_block], unsigned active,
                      const W w[tlmm_dense_arrays<C>::limbs], typename tlmm_arrays<C>::table_t table,
                      typename tlmm_dense_arrays<C>::out_t y) {
    tlmm_dense_check<C>();
    const unsigned P = C::ports, TP = C::token_lanes, WPR = C::max_wpr;
BUILD_LANES:
    for (unsigned tl = 0; tl < active; tl++) {
#pragma HLS LOOP_TRIPCOUNT max = TP
        tlmm_build_table<C>(xq, tl, tl, WPR, table);
    }
    acc_t acc[TP][P];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0
    unsigned c = 0, rs = 0;
TLMM_DENSE_ROWS:
    for (unsigned it = 0; it < C::max_rows * WPR; it++) {
#pragma HLS PIPELINE II = 1
        TELLME_COUNT("tlmm_dense_rows");
    LOOKUP_ROWS:
        for (unsigned p = 0; p < P; p++) {
#pragma HLS UNROLL
            uint64_t lo, hi;
            tlmm_dense_word<C, W>(w, it * P + p, lo, hi);
        LOOKUP_TOKENS:
            for (unsigned tl = 0; tl < TP; tl++) {
#pragma HLS UNROLL
                if (tl < active) {
                    const acc_t sum = (c == 0 ? acc_t(0) : acc[tl][p]) + tlmm_word_sum<C>(table, tl, c, lo, hi);
                    acc[tl][p] = sum;
                    if (c == WPR - 1) y[tl][rs * P + p] = float(int(sum)) / (s_x[tl] * C::weight_scale);
                }
            }
        }
        if (c == WPR - 1) {
            c = 0;
            rs++;
        } else {
            c++;
        }
    }
}

// RMSNorm of one token: y[0][i] = weight[i] * (row[0][i] * inv), the weights given as IEEE float bits.
template <class C, class W>
void rms_norm_token(const float row[1][C::n_in], const W w[C::n_in], float y[1][C::n_in]) {
    const float inv = inv_rms(sum_of_squares<C, 1, C::n_in>(row, 0, 0, C::n_in), C::n_in, C::epsilon);
    const unsigned V = C::lanes;
RMS_SCALE:
    for (unsigned i = 0; i < (C::n_in + V - 1) / V; i++) {
#pragma HLS PIPELINE II = 1
        TELLME_COUNT("rms_scale");
        for (unsigned v = 0; v < V; v++) {
#pragma HLS UNROLL
            const unsigned idx = i * V + v;
            if (idx < C::n_in) y[0][idx] = bits_to_float(uint32_t(w[idx])) * (row[0][idx] * inv);
        }
    }
}

}  // namespace tellme

#endif
