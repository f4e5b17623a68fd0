// Decode attention: one query token on chip, the K and V caches streamed from DDR on two ports.
//
// KV cache layout in DDR (fp16 bit patterns, see fp16.h), per layer:
//   k_cache[pos][kv_head][HEAD_DIM] and v_cache[pos][kv_head][HEAD_DIM]
// so one position of every KV head is one contiguous burst and a whole decode step reads
// [0, pos] in increasing addresses. Grouped-query attention: query head h reads KV head
// h / (heads / kv_heads); each K/V row is fetched once and serves every query head of its group.
// Softmax is online (running max m, running sum l, rescaled accumulator), fused with QK^T, so no
// score vector of context length is ever stored. Decode is the one-query case of attention_block.
#ifndef TELLME_ATTENTION_H
#define TELLME_ATTENTION_H

#include <cmath>
#include <stdint.h>

#include "fp16.h"

#ifndef TELLME_PRAGMA
#define TELLME_PRAGMA_STRING(x) _Pragma(#x)
#define TELLME_PRAGMA(x) TELLME_PRAGMA_STRING(x)
#endif
#ifndef TELLME_KV_PER_BEAT
#define TELLME_KV_PER_BEAT 8  // fp16 values per 128-bit AXI beat
#endif

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

// Attention for a block of b consecutive queries at positions first .. first + b - 1, whose K and V
// are already in the cache: out[i][h][:] = softmax_t(q[i][h] . k_t * scale) @ v_t over t <= first + i.
//
// TeLLMe's reversed order: query blocks of PES queries are taken from the last backwards; for each,
// the K/V rows of positions 0 .. (its last position) stream once, in increasing addresses, and are
// multicast to the block's PEs; a PE skips rows past its own position (causal work is not done).
// After a block, the next (earlier) one needs PES fewer rows: the tail of the stream is evicted.
// Every PE runs the online softmax with block size 1 (one K/V row per update), so each query's
// arithmetic, in order, is exactly that of a decode step at its position.
template <unsigned HEAD_DIM, unsigned MAX_HEADS, unsigned PES>
void attention_block(const float *q, unsigned q_stride, unsigned b, unsigned first, unsigned heads,
                     unsigned kv_heads, const uint16_t *k_cache, const uint16_t *v_cache, float *out,
                     unsigned out_stride) {
    const float scale = (float)(1.0 / std::sqrt((double)HEAD_DIM));  // as numpy: float32(d**-0.5)
    const unsigned group = heads / kv_heads;
    const unsigned row = kv_heads * HEAD_DIM;
    float m[PES][MAX_HEADS], l[PES][MAX_HEADS], acc[PES][MAX_HEADS][HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = m dim = 1 complete
#pragma HLS ARRAY_PARTITION variable = l dim = 1 complete
#pragma HLS ARRAY_PARTITION variable = acc dim = 1 complete
#pragma HLS ARRAY_PARTITION variable = acc dim = 3 complete
query_blocks:
    for (unsigned end = b; end > 0; end = end > PES ? end - PES : 0) {
        const unsigned start = end > PES ? end - PES : 0;  // queries [start, end) of the block
        const unsigned last = first + end - 1;  // the last K/V row any PE of this block needs
    init_pes:
        for (unsigned pe = 0; pe < end - start; pe++) {
            for (unsigned h = 0; h < heads; h++) {
                m[pe][h] = -INFINITY;
                l[pe][h] = 0.0f;
                for (unsigned d = 0; d < HEAD_DIM; d++) acc[pe][h][d] = 0.0f;
            }
        }
    kv_stream:
        for (unsigned t = 0; t <= last; t++) {
#pragma HLS LOOP_TRIPCOUNT max = 1024
            // the position's K and V rows of every KV head, fetched once for all PEs and query heads;
            // KV_PER_BEAT fp16 values per cycle fill a 128-bit (or wider) AXI beat
            float k_rows[MAX_HEADS][HEAD_DIM], v_rows[MAX_HEADS][HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = k_rows dim = 2 complete
#pragma HLS ARRAY_PARTITION variable = v_rows dim = 2 complete
        load_rows:
            for (unsigned i = 0; i < row; i++) {
#pragma HLS PIPELINE II = 1
                TELLME_PRAGMA(HLS UNROLL factor = TELLME_KV_PER_BEAT)
                k_rows[i / HEAD_DIM][i % HEAD_DIM] = half_to_float(k_cache[t * row + i]);
                v_rows[i / HEAD_DIM][i % HEAD_DIM] = half_to_float(v_cache[t * row + i]);
            }
        heads_loop:
            for (unsigned h = 0; h < heads; h++) {  // one query head per cycle, head_dim lanes wide
#pragma HLS PIPELINE II = 1
                const unsigned kvh = h / group;
            pes:
                for (unsigned pe = 0; pe < PES; pe++) {  // a fixed count, so the PEs unroll side by side
#pragma HLS UNROLL
                    // idle PE (short last block), or causal: this row is after the PE's query
                    if (pe >= end - start || t > first + start + pe) continue;
                    const float *qv = q + (start + pe) * q_stride + h * HEAD_DIM;
                    float dot = 0.0f;
                dot_lanes:
                    for (unsigned d = 0; d < HEAD_DIM; d++) {
#pragma HLS UNROLL
                        dot += qv[d] * k_rows[kvh][d];
                    }
                    const float s = dot * scale;
                    const float m_new = s > m[pe][h] ? s : m[pe][h];
                    const float correction = std::exp(m[pe][h] - m_new);
                    const float p = std::exp(s - m_new);
                    l[pe][h] = l[pe][h] * correction + p;
                update_lanes:
                    for (unsigned d = 0; d < HEAD_DIM; d++) {
#pragma HLS UNROLL
                        acc[pe][h][d] = acc[pe][h][d] * correction + p * v_rows[kvh][d];
                    }
                    m[pe][h] = m_new;
                }
            }
        }
    finish_pes:
        for (unsigned pe = 0; pe < end - start; pe++) {
            for (unsigned h = 0; h < heads; h++) {
                const float inv_l = 1.0f / l[pe][h];
                for (unsigned d = 0; d < HEAD_DIM; d++)
                    out[(start + pe) * out_stride + h * HEAD_DIM + d] = acc[pe][h][d] * inv_l;
            }
        }
    }
}

// Decode: one query at position length - 1 against the cache rows 0 .. length - 1 (a block of one).
template <unsigned HEAD_DIM, unsigned MAX_HEADS>
void decode_attention(const float *q, unsigned heads, unsigned kv_heads, unsigned length, const uint16_t *k_cache,
                      const uint16_t *v_cache, float *out) {
    attention_block<HEAD_DIM, MAX_HEADS, 1>(q, heads * HEAD_DIM, 1, length - 1, heads, kv_heads, k_cache, v_cache,
                                            out, heads * HEAD_DIM);
}

}  // namespace tellme

#endif
