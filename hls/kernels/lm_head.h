// The int8 LM head on the PL: logits of one token from int8 rows streamed through the weight ports.
//
// Layout (tellme.models.ddr_image): after the layers, stripe p holds rows p, p + P, ...; a row is
// ceil(hidden / 16) words of int8 values, then one word whose low 32 bits are the row's divisor s_h
// (int8 row = clamp(round(W_row * s_h)), s_h = 127 / max|W_row|, as activations are quantised). The
// final-normed token is quantised the same way (xh, s_x); a logit is float32(acc) / (s_x * s_h), the
// formula of every ternary matmul. P rows advance side by side, 16 multiply-accumulates per row a cycle;
// a row-step's P logits are dequantised one a cycle during the next row-step, packed four to a word and
// written out.
#ifndef TELLME_LM_HEAD_H
#define TELLME_LM_HEAD_H

#include "common.h"

namespace tellme {

template <class M>
void lm_head(word_stream stripes[M::ports], const int8_t xh[M::head_values / INT8_PER_WORD][INT8_PER_WORD], float s_x,
             word_t *out) {
    const unsigned P = M::ports, RW = M::head_row_words, DATA = M::head_row_words - 1;
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
                const uint64_t lo = word_lo(w), hi = word_hi(w);
                if (c < DATA) {
                    mac_t sum = 0;
                    for (unsigned k = 0; k < INT8_PER_WORD; k++) {
#pragma HLS UNROLL
                        const uint64_t half = k < 8 ? lo : hi;
                        const int8_t weight = int8_t(uint8_t(half >> (8 * (k & 7))));
                        sum += mac_t(int(weight) * int(xh[c][k]));
                    }
                    acc[p] = (c == 0 ? mac_t(0) : acc[p]) + sum;
                } else {
                    divisor[p] = bits_to_float(uint32_t(lo));
                }
            }
        }
        if (rs > 0 && c < P) {
            const unsigned row = (rs - 1) * P + c;
            if (row < M::vocab) {
                pack[filled] = float(int(pend[c])) / (s_x * pend_div[c]);
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
}

}  // namespace tellme

#endif
