// The LM head on the PL: logits of one token from int8 rows streamed through the weight ports.
//
// Layout (tellme.models.ddr_image): after the layers, stripe p holds rows p, p + P, ...; a row is its
// weight words, then one word whose low 32 bits are the row's divisor s_h (int8 row = clamp(round(W_row *
// s_h)), s_h = 127 / max|W_row|, as activations are quantised). The final-normed token is quantised the
// same way (xh, s_x); a logit is float32(acc) / (s_x * s_h), the formula of every ternary matmul.
//
// Two heads (config.h model_config::head_twopass):
//   int8      a row's words hold its int8 values, 16 a word; acc = xh . row.
//   two-pass  a row's words hold the high nibbles h = w >> 4 of its int8 values, 32 a word (half the
//             bytes); the first pass (lm_head) gives every row acc = xh . (16 h + 8), the middle of each
//             weight's bucket, and keeps the `head_candidates` rows of largest logit; the second
//             (lm_head_rescore, after the block) reads those rows' high and low nibbles (w & 15, stored
//             after the streamed rows) and rewrites their logits with the whole int8 row's acc. Greedy
//             decoding picks the int8 head's token whenever that token is a candidate.
// P rows advance side by side, one word per row a cycle; a row-step's P logits are dequantised one a
// cycle during the next row-step (and, two-pass, offered to the candidate list), packed four to a word
// and written out. tellme.models.reference computes the same logits (int8_head_logits,
// twopass_head_logits).
#ifndef TELLME_LM_HEAD_H
#define TELLME_LM_HEAD_H

#include "common.h"

namespace tellme {

static const unsigned NIBBLES_PER_WORD = 32;

// Nibble j (0..31) of a word given as its halves: signed (a high nibble, 4-bit two's complement, -8..7)
// or unsigned (a low one, 0..15).
inline int word_nibble(uint64_t lo, uint64_t hi, unsigned j, bool is_signed) {
#pragma HLS INLINE
    const int nibble = int(((j < 16 ? lo : hi) >> (4 * (j & 15))) & 15u);
    return is_signed && nibble >= 8 ? nibble - 16 : nibble;
}

// Weight word c of a row's contribution to its acc: 16 int8 values (int8 head) or 32 high nibbles, each
// taken as 16 h + 8 = 8 (2h + 1) (the 8 is applied to the row's sum).
template <class M>
inline mac_t head_word_sum(const word_t &w, const int8_t xh[M::head_values / M::head_lanes][M::head_lanes],
                           unsigned c) {
#pragma HLS INLINE
    const uint64_t lo = word_lo(w), hi = word_hi(w);
    mac_t sum = 0;
    if (M::head_twopass) {
        for (unsigned k = 0; k < NIBBLES_PER_WORD; k++) {
#pragma HLS UNROLL
            const int odd = 2 * word_nibble(lo, hi, k, true) + 1;  // 2h + 1, in -15..15
            sum += mac_t(odd * int(xh[c][k]));
        }
    } else {
        for (unsigned k = 0; k < INT8_PER_WORD; k++) {
#pragma HLS UNROLL
            const uint64_t half = k < 8 ? lo : hi;
            const int8_t weight = int8_t(uint8_t(half >> (8 * (k & 7))));
            sum += mac_t(int(weight) * int(xh[c][k]));
        }
    }
    return sum;
}

// A float's bits as a signed integer of the same order (larger float, larger key): the candidate list
// compares integers. Logits are never -0 or NaN (acc / a positive divisor).
inline int32_t order_key(float f) {
#pragma HLS INLINE
    const uint32_t bits = float_to_bits(f);
    return int32_t(bits & 0x80000000u ? bits ^ 0x7FFFFFFFu : bits);
}

template <class M>
void lm_head(word_stream stripes[M::ports], const int8_t xh[M::head_values / M::head_lanes][M::head_lanes], float s_x,
             word_t *out, unsigned candidates[M::head_candidates]) {
    const unsigned P = M::ports, RW = M::head_row_words, DATA = M::head_row_words - 1, K = M::head_candidates;
    const unsigned per_step = RW > P ? RW : P;
    const unsigned max_iters = M::head_rows * (M::head_row_words > M::ports ? M::head_row_words : M::ports) + M::ports;
    (void)max_iters;
    mac_t acc[P], pend[P];
    float divisor[P], pend_div[P];
#pragma HLS ARRAY_PARTITION variable = acc complete
#pragma HLS ARRAY_PARTITION variable = pend complete
#pragma HLS ARRAY_PARTITION variable = divisor complete
#pragma HLS ARRAY_PARTITION variable = pend_div complete
    float pack[FLOATS_PER_WORD];
#pragma HLS ARRAY_PARTITION variable = pack complete
    // the two-pass head's candidates, best first (a shift register: insertion compares all K at once)
    int32_t best_key[K];
    unsigned best_row[K];
#pragma HLS ARRAY_PARTITION variable = best_key complete
#pragma HLS ARRAY_PARTITION variable = best_row complete
CANDIDATES_INIT:
    for (unsigned k = 0; k < K; k++) {
#pragma HLS UNROLL
        best_key[k] = INT32_MIN;
        best_row[k] = 0;
    }
    unsigned c = 0, rs = 0, filled = 0, written = 0;
LM_HEAD:
    for (unsigned it = 0; it < M::head_rows * per_step + P; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
        TELLME_COUNT("lm_head");
        if (c == 0 && rs > 0) {
            for (unsigned p = 0; p < P; p++) {
                pend[p] = acc[p];
                pend_div[p] = divisor[p];
            }
        }
        if (rs < M::head_rows && c < RW) {
            for (unsigned p = 0; p < P; p++) {
#pragma HLS UNROLL
                const word_t w = stripes[p].read();
                if (c < DATA) acc[p] = (c == 0 ? mac_t(0) : acc[p]) + head_word_sum<M>(w, xh, c);
                else divisor[p] = bits_to_float(uint32_t(word_lo(w)));
            }
        }
        if (rs > 0 && c < P) {
            const unsigned row = (rs - 1) * P + c;
            if (row < M::vocab) {
                const mac_t scaled = M::head_twopass ? mac_t(pend[c] * 8) : pend[c];
                const float logit = float(int(scaled)) / (s_x * pend_div[c]);
                pack[filled] = logit;
                if (M::head_twopass) {
                    // insert (logit, row) by strict comparison: of equal logits the earlier row stays first
                    const int32_t key = order_key(logit);
                CANDIDATES_INSERT:
                    for (unsigned k = K - 1; k > 0; k--) {
#pragma HLS UNROLL
                        if (key > best_key[k - 1]) {
                            best_key[k] = best_key[k - 1];
                            best_row[k] = best_row[k - 1];
                        } else if (key > best_key[k]) {
                            best_key[k] = key;
                            best_row[k] = row;
                        }
                    }
                    if (key > best_key[0]) {
                        best_key[0] = key;
                        best_row[0] = row;
                    }
                }
                if (filled == FLOATS_PER_WORD - 1 || row == M::vocab - 1) {
                    uint64_t lo = 0, hi = 0;
                    for (unsigned k = 0; k < FLOATS_PER_WORD; k++) {
#pragma HLS UNROLL
                        const uint64_t bits = k <= filled ? uint64_t(float_to_bits(pack[k])) : 0;
                        if (k < 2) lo |= bits << (32 * k);
                        else hi |= bits << (32 * (k - 2));
                    }
                    out[written] = make_word(lo, hi);
                    written++;
                    filled = 0;
                } else {
                    filled++;
                }
            }
        }
        if (c == per_step - 1) {
            c = 0;
            rs++;
        } else {
            c++;
        }
    }
    if (M::head_twopass) {
    CANDIDATES_OUT:
        for (unsigned k = 0; k < K; k++) {
#pragma HLS UNROLL
            candidates[k] = best_row[k];
        }
    }
}

// Word `addr` of stripe p: every stripe read at the same address (unconditional reads at consecutive
// addresses in the caller's pipelined loop: a burst on each port), the one asked for kept.
template <class M>
inline word_t stripe_word(const word_t *w0, const word_t *w1, const word_t *w2, const word_t *w3, const word_t *w4,
                          const word_t *w5, const word_t *w6, const word_t *w7, unsigned p, unsigned addr) {
#pragma HLS INLINE
    word_t v = w0[addr];
    if (M::ports > 1) { const word_t u = w1[addr]; if (p == 1) v = u; }
    if (M::ports > 2) { const word_t u = w2[addr]; if (p == 2) v = u; }
    if (M::ports > 3) { const word_t u = w3[addr]; if (p == 3) v = u; }
    if (M::ports > 4) { const word_t u = w4[addr]; if (p == 4) v = u; }
    if (M::ports > 5) { const word_t u = w5[addr]; if (p == 5) v = u; }
    if (M::ports > 6) { const word_t u = w6[addr]; if (p == 6) v = u; }
    if (M::ports > 7) { const word_t u = w7[addr]; if (p == 7) v = u; }
    return v;
}

// 32 nibbles of a word times xh[c]: signed (a high nibble, 4-bit two's complement) or unsigned (a low one).
template <class M>
inline mac_t nibble_dot(const word_t &w, const int8_t xh[M::head_values / M::head_lanes][M::head_lanes],
                        unsigned c, bool is_signed) {
#pragma HLS INLINE
    const uint64_t lo = word_lo(w), hi = word_hi(w);
    mac_t sum = 0;
    for (unsigned j = 0; j < NIBBLES_PER_WORD; j++) {
#pragma HLS UNROLL
        sum += mac_t(word_nibble(lo, hi, j, is_signed) * int(xh[c][j]));
    }
    return sum;
}

// The two-pass head's second pass, after the last block: each candidate row's whole int8 acc, 16 x its high
// nibbles (the streamed words, then the divisor word) plus its low nibbles (w = 16 h + l), read in two
// loops of consecutive words, and its logit rewritten in place: the output word is read, modified and
// written back. RESCORE_ROWS stays unpipelined, so a candidate's write lands before the next one's read.
template <class M>
void lm_head_rescore(const word_t *w0, const word_t *w1, const word_t *w2, const word_t *w3, const word_t *w4,
                     const word_t *w5, const word_t *w6, const word_t *w7,
                     const int8_t xh[M::head_values / M::head_lanes][M::head_lanes], float s_x,
                     const unsigned candidates[M::head_candidates], word_t *out) {
#pragma HLS INLINE off
    const unsigned P = M::ports, RW = M::head_row_words, DATA = M::head_row_words - 1;
RESCORE_ROWS:
    for (unsigned k = 0; k < M::head_candidates; k++) {
#pragma HLS PIPELINE off
        const unsigned row = candidates[k], p = row % P, r = row / P;
        const unsigned high = M::head_offset + r * RW, low = M::head_low_offset + r * DATA;
        mac_t acc = 0;
        float divisor = 1.0f;
    RESCORE_HIGH:
        for (unsigned i = 0; i < RW; i++) {
#pragma HLS PIPELINE II = 1
            TELLME_COUNT("rescore");
            const word_t w = stripe_word<M>(w0, w1, w2, w3, w4, w5, w6, w7, p, high + i);
            if (i < DATA) acc += mac_t(nibble_dot<M>(w, xh, i, true) * 16);
            else divisor = bits_to_float(uint32_t(word_lo(w)));
        }
    RESCORE_LOW:
        for (unsigned i = 0; i < DATA; i++) {
#pragma HLS PIPELINE II = 1
            TELLME_COUNT("rescore");
            acc += nibble_dot<M>(stripe_word<M>(w0, w1, w2, w3, w4, w5, w6, w7, p, low + i), xh, i, false);
        }
        const uint64_t bits = float_to_bits(float(int(acc)) / (s_x * divisor));
        const unsigned lane = row % FLOATS_PER_WORD, shift = 32 * (lane & 1);
        const word_t old = out[row / FLOATS_PER_WORD];
        uint64_t lo = word_lo(old), hi = word_hi(old);
        if (lane < 2) lo = (lo & ~(uint64_t(0xFFFFFFFFu) << shift)) | (bits << shift);
        else hi = (hi & ~(uint64_t(0xFFFFFFFFu) << shift)) | (bits << shift);
        out[row / FLOATS_PER_WORD] = make_word(lo, hi);
    }
}

}  // namespace tellme

#endif
