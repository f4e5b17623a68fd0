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

namespace tellme {

// Every attention parameter; a design's attention_config derives from this and overrides what differs.
struct attention_defaults {
    static const unsigned head_dim = 64;
    static const unsigned max_heads = 16;  // query heads
    static const unsigned max_kv_heads = 16;
    static const unsigned pes = 1;  // query PEs sharing one K/V stream (prefill); decode uses one
    static const unsigned kv_per_beat = 8;  // fp16 values per AXI beat of the K/V ports
    static const unsigned max_context = 1024;  // positions of the KV cache (loop trip counts)
};

// The same attention with one query PE: decode.
template <class CONFIG_T> struct single_pe : CONFIG_T {
    static const unsigned pes = 1;
};

// Append one token's K and V (float) at position pos, rounded to fp16 as numpy.float16 does.
template <class CONFIG_T>
void kv_append(const float *k, const float *v, unsigned kv_heads, unsigned pos, uint16_t *k_cache,
               uint16_t *v_cache) {
    const unsigned row = kv_heads * CONFIG_T::head_dim;
    const unsigned max_row = CONFIG_T::max_kv_heads * CONFIG_T::head_dim;  // pragma value
    (void)max_row;
kv_append_loop:
    for (unsigned i = 0; i < row; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_row
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
template <class CONFIG_T>
void attention_block(const float *q, unsigned q_stride, unsigned b, unsigned first, unsigned heads,
                     unsigned kv_heads, const uint16_t *k_cache, const uint16_t *v_cache, float *out,
                     unsigned out_stride) {
    const unsigned HEAD_DIM = CONFIG_T::head_dim, MAX_HEADS = CONFIG_T::max_heads, PES = CONFIG_T::pes;
    const unsigned max_context = CONFIG_T::max_context, kv_per_beat = CONFIG_T::kv_per_beat;  // pragma values
    (void)max_context;
    (void)kv_per_beat;
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
#pragma HLS LOOP_TRIPCOUNT max = max_context
            // the position's K and V rows of every KV head, fetched once for all PEs and query heads;
            // KV_PER_BEAT fp16 values per cycle fill a 128-bit (or wider) AXI beat
            float k_rows[MAX_HEADS][HEAD_DIM], v_rows[MAX_HEADS][HEAD_DIM];
#pragma HLS ARRAY_PARTITION variable = k_rows dim = 2 complete
#pragma HLS ARRAY_PARTITION variable = v_rows dim = 2 complete
        load_rows:
            for (unsigned i = 0; i < row; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS UNROLL factor = kv_per_beat
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
template <class CONFIG_T>
void decode_attention(const float *q, unsigned heads, unsigned kv_heads, unsigned length, const uint16_t *k_cache,
                      const uint16_t *v_cache, float *out) {
    const unsigned stride = heads * CONFIG_T::head_dim;
    attention_block<single_pe<CONFIG_T> >(q, stride, 1, length - 1, heads, kv_heads, k_cache, v_cache, out, stride);
}

}  // namespace tellme

#endif
