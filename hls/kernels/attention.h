// Decode attention: one query token on chip, the K and V caches streamed from DDR on two ports.
//
// KV cache layout in DDR (fp16 bit patterns, see fp16.h), per layer:
//   k_cache[pos][kv_head][HEAD_DIM] and v_cache[pos][kv_head][HEAD_DIM]
// so one position of every KV head is one contiguous burst and a whole decode step reads
// [0, pos] in increasing addresses. Grouped-query attention: query head h reads KV head
// h / (heads / kv_heads); each K/V row is fetched once and serves every query head of its group.
// Softmax is online (running max m, running sum l, rescaled accumulator), fused with QK^T, so no
// score vector of context length is ever stored.
#ifndef TELLME_ATTENTION_H
#define TELLME_ATTENTION_H

#include <cmath>
#include <stdint.h>

#include "fp16.h"

namespace tellme {

// Append one token's K and V (float) at position pos, rounded to fp16 as numpy.float16 does.
template <unsigned HEAD_DIM>
void kv_append(const float *k, const float *v, unsigned kv_heads, unsigned pos, uint16_t *k_cache,
               uint16_t *v_cache) {
    const unsigned row = kv_heads * HEAD_DIM;
kv_append_loop:
    for (unsigned i = 0; i < row; i++) {
#pragma HLS PIPELINE II = 1
        k_cache[pos * row + i] = float_to_half(k[i]);
        v_cache[pos * row + i] = float_to_half(v[i]);
    }
}

// out[h][:] = softmax_t(q[h] . k_t * scale) @ v_t over t in [0, length), for every query head.
// MAX_HEADS bounds the on-chip query, running statistics and accumulators.
template <unsigned HEAD_DIM, unsigned MAX_HEADS>
void decode_attention(const float *q, unsigned heads, unsigned kv_heads, unsigned length,
                      const uint16_t *k_cache, const uint16_t *v_cache, float *out) {
    const float scale = (float)(1.0 / std::sqrt((double)HEAD_DIM));  // as numpy: float32(d**-0.5)
    const unsigned group = heads / kv_heads;
    const unsigned row = kv_heads * HEAD_DIM;
    float m[MAX_HEADS], l[MAX_HEADS], acc[MAX_HEADS][HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = acc dim = 2 complete
init_heads:
    for (unsigned h = 0; h < heads; h++) {
        m[h] = -INFINITY;
        l[h] = 0.0f;
        for (unsigned d = 0; d < HEAD_DIM; d++) acc[h][d] = 0.0f;
    }
positions:
    for (unsigned t = 0; t < length; t++) {
        float k_row[HEAD_DIM], v_row[HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = k_row complete
#pragma HLS ARRAY_PARTITION variable = v_row complete
    heads_loop:
        for (unsigned h = 0; h < heads; h++) {
            const unsigned kvh = h / group;
            if (h % group == 0) {  // a new KV head: fetch its K and V rows once for the group
                for (unsigned d = 0; d < HEAD_DIM; d++) {
#pragma HLS PIPELINE II = 1
                    k_row[d] = half_to_float(k_cache[t * row + kvh * HEAD_DIM + d]);
                    v_row[d] = half_to_float(v_cache[t * row + kvh * HEAD_DIM + d]);
                }
            }
            float dot = 0.0f;
            for (unsigned d = 0; d < HEAD_DIM; d++) {
#pragma HLS PIPELINE II = 1
                dot += q[h * HEAD_DIM + d] * k_row[d];
            }
            const float s = dot * scale;
            const float m_new = s > m[h] ? s : m[h];
            const float correction = std::exp(m[h] - m_new);
            const float p = std::exp(s - m_new);
            l[h] = l[h] * correction + p;
            for (unsigned d = 0; d < HEAD_DIM; d++) {
#pragma HLS PIPELINE II = 1
                acc[h][d] = acc[h][d] * correction + p * v_row[d];
            }
            m[h] = m_new;
        }
    }
finish_heads:
    for (unsigned h = 0; h < heads; h++) {
        const float inv_l = 1.0f / l[h];
        for (unsigned d = 0; d < HEAD_DIM; d++) out[h * HEAD_DIM + d] = acc[h][d] * inv_l;
    }
}

}  // namespace tellme

#endif
