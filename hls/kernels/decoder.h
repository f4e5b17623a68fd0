// The whole decoder stack for n tokens at positions [pos, pos + n): every layer, the final norm and,
// with the LM head on the PL, the last token's logits. The host gathers the embeddings.
//
// Tokens go through in blocks of up to B (tlmm::max_block); decode is the block of one. Each block is
// one DATAFLOW region of two processes joined by FIFOs (the P stripe streams and the io stream):
//   prefetch (prefetch.h)  reads the block's fixed schedule from DDR, running ahead of the engine
//   engine   (below)       consumes it in the same order and writes K/V rows and the outputs
// Blocks run one after another, so a block reads K/V rows that earlier blocks wrote.
//
// The engine walks a block as a list of steps, four per layer and one for the final norm. Every step
// starts with the element-wise unit (RMSNorm + int8 quantisation of its input, one call site) and,
// but for the last, runs one matrix on the TLMM engine (one call site) whose dequantisation does the
// step's element-wise tail:
//   qkv     norm(h, input_layernorm)           -> q, k (RoPE applied, k to fp16), v (fp16); then the
//                                                 K/V rows go to DDR and attention runs (attention.h)
//   o       norm(att, attn_sub_norm)           -> h += o
//   gateup  norm(h, post_attention_layernorm)  -> m = act(gate) * up
//   down    norm(m, ffn_sub_norm)              -> h += down
//   final   norm(h, norm)                      -> hidden states out, or the int8 LM head (lm_head.h)
// The order and arithmetic are those of tellme.models.reference and transformers' BitNet. A token's
// arithmetic does not depend on its block, so a prefill of n tokens computes what n decode calls do.
#ifndef TELLME_DECODER_H
#define TELLME_DECODER_H

#include "attention.h"
#include "common.h"
#include "elementwise.h"
#include "fp16.h"
#include "lm_head.h"
#include "prefetch.h"
#include "tlmm.h"

namespace tellme {

enum decoder_status { DECODER_OK = 0, DECODER_BAD_RANGE = 1 };
enum step_kind { STEP_QKV = 0, STEP_O = 1, STEP_GATEUP = 2, STEP_DOWN = 3, STEP_FINAL = 4 };
enum norm_index { NORM_INPUT = 0, NORM_POST = 1, NORM_ATTN_SUB = 2, NORM_FFN_SUB = 3, NORM_FINAL = 4 };
enum scale_index { S_Q = 0, S_K = 1, S_V = 2, S_O = 3, S_GATE = 4, S_UP = 5, S_DOWN = 6 };

// The engine's on-chip buffers, one struct so that the TLMM's dequantisation can reach the ones its
// step writes. act holds each token's residual stream h, attention output and gate x up product.
template <class M> struct engine_buffers {
    static const unsigned B = M::tlmm::max_block;
    float act[B][M::act_dim];
    float q[B][attention_arrays<typename M::attention>::q_pad];  // rotated queries, heads padded
    uint16_t kcur[B][attention_arrays<typename M::attention>::kv_pad];  // the block's K rows (fp16)
    uint16_t vcur[B][attention_arrays<typename M::attention>::kv_pad];
    float rope_cos[B][M::rope_half_pad];
    float rope_sin[B][M::rope_half_pad];
    float saved[M::tlmm::token_lanes][M::head_dim / 2];  // first halves of a head, waiting for RoPE partners
    float gate[M::tlmm::token_lanes];  // a gate value, waiting for its up row
};

// What a matrix's dequantised outputs do: the tail of the step (see the file comment).
template <class M> struct step_sink {
    unsigned kind;
    float scales[8];

    void rope(engine_buffers<M> &bf, unsigned tok, unsigned r, float y, bool key) {
#pragma HLS INLINE
        const unsigned half = M::head_dim / 2, h = r / M::head_dim, d = r % M::head_dim;
        const unsigned tl = tok % M::tlmm::token_lanes;
        if (d < half) {
            bf.saved[tl][d] = y;
            return;
        }
        const float x1 = bf.saved[tl][d - half], x2 = y;
        const float c = bf.rope_cos[tok][d - half], s = bf.rope_sin[tok][d - half];
        const float first = x1 * c + (-x2) * s, second = x2 * c + x1 * s;
        const unsigned base = h * M::head_dim_pad;
        if (key) {
            bf.kcur[tok][base + d - half] = float_to_half(first);
            bf.kcur[tok][base + d] = float_to_half(second);
        } else {
            bf.q[tok][base + d - half] = first;
            bf.q[tok][base + d] = second;
        }
    }

    void put(engine_buffers<M> &bf, unsigned tok, unsigned row, acc_t acc, float s_x) {
#pragma HLS INLINE
        const float value = float(int(acc));
        if (kind == STEP_QKV) {
            if (row < M::q_size) {
                rope(bf, tok, row, value / (s_x * scales[S_Q]), false);
            } else if (row < M::q_size + M::kv_size) {
                rope(bf, tok, row - M::q_size, value / (s_x * scales[S_K]), true);
            } else if (row < M::q_size + 2 * M::kv_size) {
                const unsigned r = row - M::q_size - M::kv_size;
                const float y = value / (s_x * scales[S_V]);
                bf.vcur[tok][(r / M::head_dim) * M::head_dim_pad + r % M::head_dim] = float_to_half(y);
            }
        } else if (kind == STEP_GATEUP) {
            const unsigned tl = tok % M::tlmm::token_lanes;
            if (row < 2 * M::intermediate) {
                if (row % 2 == 0) {
                    bf.gate[tl] = value / (s_x * scales[S_GATE]);
                } else {
                    const float up = value / (s_x * scales[S_UP]);
                    bf.act[tok][M::act_m + row / 2] = activate(bf.gate[tl], M::act) * up;
                }
            }
        } else if (row < M::hidden) {  // o, down: the residual add
            const float y = value / (s_x * scales[kind == STEP_O ? S_O : S_DOWN]);
            bf.act[tok][row] = bf.act[tok][row] + y;
        }
    }
};

// n words of four floats from io into dst[row][0 .. n*4).
template <class M, unsigned ROWS, unsigned DIM>
void read_floats(word_stream &io, unsigned words, float dst[ROWS][DIM], unsigned row, unsigned offset) {
    const unsigned max_words = DIM / FLOATS_PER_WORD;
    (void)max_words;
READ_FLOATS:
    for (unsigned i = 0; i < words; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_words
        TELLME_COUNT("read_floats");
        const word_t w = io.read();
        const uint64_t lo = word_lo(w), hi = word_hi(w);
        for (unsigned k = 0; k < FLOATS_PER_WORD; k++) {
#pragma HLS UNROLL
            dst[row][offset + FLOATS_PER_WORD * i + k] = word_float(lo, hi, k);
        }
    }
}

// A layer's params: the four norm weights and the seven weight divisors (ddr_image's param layout).
template <class M>
void read_layer_params(word_stream &io, float normw[5][M::norm_dim], float scales[8]) {
    const unsigned F = FLOATS_PER_WORD;
    read_floats<M, 5, M::norm_dim>(io, M::hidden_pad / F, normw, NORM_INPUT, 0);
    read_floats<M, 5, M::norm_dim>(io, M::hidden_pad / F, normw, NORM_POST, 0);
    read_floats<M, 5, M::norm_dim>(io, M::q_size_pad / F, normw, NORM_ATTN_SUB, 0);
    read_floats<M, 5, M::norm_dim>(io, M::intermediate_pad / F, normw, NORM_FFN_SUB, 0);
READ_SCALES:
    for (unsigned i = 0; i < 2; i++) {
#pragma HLS PIPELINE II = 1
        TELLME_COUNT("read_scales");
        const word_t w = io.read();
        const uint64_t lo = word_lo(w), hi = word_hi(w);
        for (unsigned k = 0; k < FLOATS_PER_WORD; k++) scales[F * i + k] = word_float(lo, hi, k);
    }
}

// The block's K and V rows (fp16) to the cache in DDR: stripe p's share of a row is the words p of its
// chunks (ddr_image's K/V layout), written through kv_out.
template <class M>
void write_kv(const engine_buffers<M> &bf, unsigned layer, unsigned first, unsigned b, word_t *kv_out) {
    const unsigned P = M::ports, RW = M::kv_row_words, CH = M::attention::chunk;
    const unsigned per_token = 2 * P * RW;
    const unsigned max_iters = M::tlmm::max_block * 2 * M::ports * M::kv_row_words;
    (void)max_iters;
    unsigned w = 0, p = 0, which = 0, tok = 0;
WRITE_KV:
    for (unsigned it = 0; it < b * per_token; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
        TELLME_COUNT("write_kv");
        const unsigned pos = first + tok, block = pos / M::kv_block, r = pos % M::kv_block;
        const unsigned offset = p * M::kv_stripe_words + layer * M::kv_layer_words +
                                (block * 2 * M::kv_block + r + (which ? M::kv_block : 0)) * RW + w;
        uint64_t lo = 0, hi = 0;
        for (unsigned h = 0; h < HALVES_PER_WORD; h++) {
#pragma HLS UNROLL
            const unsigned v = w * CH + HALVES_PER_WORD * p + h;
            const uint64_t bits = which ? bf.vcur[tok][v] : bf.kcur[tok][v];
            if (h < 4) lo |= bits << (16 * h);
            else hi |= bits << (16 * (h - 4));
        }
        kv_out[offset] = make_word(lo, hi);
        if (w == RW - 1) {
            w = 0;
            if (p == P - 1) {
                p = 0;
                if (which == 1) {
                    which = 0;
                    tok++;
                } else {
                    which = 1;
                }
            } else {
                p++;
            }
        } else {
            w++;
        }
    }
}

// Hidden states out: row `row` of out, four floats a word.
template <class M>
void write_hidden(const float y[1][M::norm_dim], unsigned row, word_t *out) {
    const unsigned words = M::hidden_pad / FLOATS_PER_WORD;
WRITE_HIDDEN:
    for (unsigned i = 0; i < words; i++) {
#pragma HLS PIPELINE II = 1
        TELLME_COUNT("write_hidden");
        uint64_t lo = 0, hi = 0;
        for (unsigned k = 0; k < FLOATS_PER_WORD; k++) {
#pragma HLS UNROLL
            const unsigned idx = FLOATS_PER_WORD * i + k;
            const uint64_t bits = idx < M::hidden ? uint64_t(float_to_bits(y[0][idx])) : 0;
            if (k < 2) lo |= bits << (32 * k);
            else hi |= bits << (32 * (k - 2));
        }
        out[row * words + i] = make_word(lo, hi);
    }
}

// The int8 vector the LM head reads, 16 values a word, from the final norm's groups of three.
template <class M, unsigned B, unsigned G>
void head_vector(const int8_t xq[B][G][3], unsigned tok, int8_t xh[M::head_values]) {
HEAD_VECTOR:
    for (unsigned i = 0; i < M::head_values; i++) {
#pragma HLS PIPELINE II = 1
        TELLME_COUNT("head_vector");
        xh[i] = i < M::hidden ? xq[tok][i / 3][i % 3] : int8_t(0);
    }
}

// One block of the engine: b tokens at positions first .. first+b-1, embeddings at row `row` of the
// call; `head`: this block ends the call and the design's LM head runs on its last token.
template <class M>
void engine(word_stream stripes[M::ports], word_stream &io, word_t *kv_out, word_t *out, unsigned first,
            unsigned b, unsigned row, bool head) {
    typedef typename M::tlmm TL;
    typedef typename M::attention AT;
    typedef typename M::elementwise EW;
    typedef tlmm_arrays<TL> TA;
    typedef attention_arrays<AT> AA;
    const unsigned B = TL::max_block;

    static engine_buffers<M> bf;
    static float normw[5][M::norm_dim];
    static float y[1][M::norm_dim];
    static int8_t xq[B][TA::max_groups][3];
    static int8_t xh[M::head_values];
    static float s_x[B];
    static entry_t table[TL::token_lanes][WORD_INDICES][TL::max_wpr][TABLE_ENTRIES];
    static word_t tile[TL::ports][TL::tile_words];
    static word_t kvbuf[2][AT::kv_block][AA::row_chunks][AT::ports];
    static float att_m[B][AT::heads], att_l[B][AT::heads];
    static float att_acc[B][AA::q_pad];
    const unsigned lanes = AT::lanes, chunk = AT::chunk;  // pragma values
    (void)lanes;
    (void)chunk;
#pragma HLS ARRAY_PARTITION variable = bf.act cyclic factor = 15 dim = 2
#pragma HLS ARRAY_PARTITION variable = bf.q cyclic factor = lanes dim = 2
#pragma HLS ARRAY_PARTITION variable = bf.kcur cyclic factor = chunk dim = 2
#pragma HLS ARRAY_PARTITION variable = bf.vcur cyclic factor = chunk dim = 2
#pragma HLS ARRAY_PARTITION variable = normw cyclic factor = 15 dim = 2
#pragma HLS ARRAY_PARTITION variable = y cyclic factor = 15 dim = 2
#pragma HLS ARRAY_PARTITION variable = xq cyclic factor = 5 dim = 2
#pragma HLS ARRAY_PARTITION variable = xq complete dim = 3
#pragma HLS ARRAY_PARTITION variable = xh cyclic factor = 16
#pragma HLS ARRAY_PARTITION variable = table complete dim = 1
#pragma HLS ARRAY_PARTITION variable = table complete dim = 2
#pragma HLS ARRAY_RESHAPE variable = table complete dim = 4
#pragma HLS BIND_STORAGE variable = table type = ram_s2p impl = lutram
#pragma HLS ARRAY_PARTITION variable = tile complete dim = 1
    TELLME_PRAGMA(HLS BIND_STORAGE variable = tile type = ram_s2p impl = TELLME_TILE_STORAGE)
#pragma HLS ARRAY_PARTITION variable = kvbuf complete dim = 4
#pragma HLS ARRAY_PARTITION variable = att_acc cyclic factor = lanes dim = 2

    const unsigned F = FLOATS_PER_WORD;
EMBEDDINGS:
    for (unsigned t = 0; t < b; t++) {
#pragma HLS LOOP_TRIPCOUNT max = B
        read_floats<M, B, M::act_dim>(io, M::hidden_pad / F, bf.act, t, 0);
    }
ROPE_ROWS:
    for (unsigned t = 0; t < 2 * b; t++) {
#pragma HLS LOOP_TRIPCOUNT max = 2 * B
        if (t < b) read_floats<M, B, M::rope_half_pad>(io, M::rope_half_pad / F, bf.rope_cos, t, 0);
        else read_floats<M, B, M::rope_half_pad>(io, M::rope_half_pad / F, bf.rope_sin, t - b, 0);
    }

    step_sink<M> sink;
    const unsigned steps = 4 * M::layers + 1;
STEPS:
    for (unsigned step = 0; step < steps; step++) {
#pragma HLS LOOP_TRIPCOUNT max = steps
        const unsigned layer = step / 4;
        const unsigned kind = step == steps - 1 ? unsigned(STEP_FINAL) : step % 4;
        if (kind == STEP_QKV) read_layer_params<M>(io, normw, sink.scales);
        if (kind == STEP_FINAL) read_floats<M, 5, M::norm_dim>(io, M::hidden_pad / F, normw, NORM_FINAL, 0);
        sink.kind = kind;

        // the step's norm and quantisation, one token at a time (one call site)
        const unsigned src = kind == STEP_O ? M::act_att : kind == STEP_DOWN ? M::act_m : 0u;
        const unsigned n = kind == STEP_O ? M::q_size : kind == STEP_DOWN ? M::intermediate : M::hidden;
        const unsigned which = kind == STEP_QKV ? NORM_INPUT : kind == STEP_O ? NORM_ATTN_SUB
                             : kind == STEP_GATEUP ? NORM_POST : kind == STEP_DOWN ? NORM_FFN_SUB : NORM_FINAL;
        const unsigned wpr = kind == STEP_QKV ? M::qkv_wpr : kind == STEP_O ? M::o_wpr
                           : kind == STEP_GATEUP ? M::gateup_wpr : kind == STEP_DOWN ? M::down_wpr : M::final_wpr;
        const unsigned rows = kind == STEP_QKV ? M::qkv_rows : kind == STEP_O ? M::o_rows
                            : kind == STEP_GATEUP ? M::gateup_rows : M::down_rows;
    NORM_TOKENS:
        for (unsigned t = 0; t < b; t++) {
#pragma HLS LOOP_TRIPCOUNT max = B
            s_x[t] = norm_quant<EW, B, M::act_dim, 5, M::norm_dim, B, TA::max_groups>(
                bf.act, t, src, normw, which, M::eps, n, wpr * WORD_INDICES, y, xq, t);
            if (kind == STEP_FINAL && !M::lm_head) write_hidden<M>(y, row + t, out);
        }
        if (kind == STEP_FINAL) break;

        // the step's matrix (one call site: one TLMM engine for every matrix)
        tlmm_matrix<TL, step_sink<M>, engine_buffers<M> >(stripes, rows, wpr, xq, s_x, b, table, tile, sink, bf);

        if (kind == STEP_QKV) {
            write_kv<M>(bf, layer, first, b, kv_out);
            // attention: blocks of R positions, each from the cache below `first` and the block's own rows
            attention_init<AT>(b, att_m, att_l, att_acc);
            const unsigned R = AT::kv_block, last = first + b - 1;
            const unsigned max_blocks = (M::max_context + AT::kv_block - 1) / AT::kv_block;
            (void)max_blocks;
        ATTENTION_BLOCKS:
            for (unsigned kb = 0; kb <= last / R; kb++) {
#pragma HLS LOOP_TRIPCOUNT max = max_blocks
                const unsigned begin = kb * R, end = begin + R;
                const unsigned cached = first > begin ? (first < end ? first : end) - begin : 0;
            ATTENTION_QUERIES:
                for (unsigned i = 0; i < b; i++) {
#pragma HLS LOOP_TRIPCOUNT max = B
                    const unsigned pos = first + i;
                    if (kb > pos / R) continue;  // a block after this query's position
                    const unsigned own_begin = first > begin ? first : begin;
                    const unsigned own_end = pos + 1 < end ? pos + 1 : end;
                    const unsigned own = own_end > own_begin ? own_end - own_begin : 0;
                    attend_block<AT>(i == 0 ? KV_STREAM : KV_REPLAY, stripes, kvbuf, bf.kcur, bf.vcur, cached, own,
                                     own_begin - first, bf.q, i, att_m, att_l, att_acc);
                }
            }
        ATTENTION_OUTPUTS:
            for (unsigned i = 0; i < b; i++) {
#pragma HLS LOOP_TRIPCOUNT max = B
                attention_output<AT, M::act_dim>(i, att_l, att_acc, bf.act, M::act_att);
            }
        }
    }
    if (M::lm_head && head) {
        head_vector<M, B, TA::max_groups>(xq, b - 1, xh);
        lm_head<M>(stripes, xh, s_x[b - 1], out);
    }
}

// One block: the prefetcher and the engine, side by side.
template <class M>
void decoder_block(const word_t *w0, const word_t *w1, const word_t *w2, const word_t *w3, const word_t *w4,
                   const word_t *w5, const word_t *w6, const word_t *w7, const word_t *k0, const word_t *k1,
                   const word_t *k2, const word_t *k3, const word_t *k4, const word_t *k5, const word_t *k6,
                   const word_t *k7, const word_t *params, const word_t *hidden_in, word_t *kv_out, word_t *out,
                   unsigned first, unsigned b, unsigned row, bool head) {
#pragma HLS DATAFLOW
    word_stream stripes[M::ports];
    word_stream io;
    const unsigned stripe_depth = M::stripe_fifo_depth, io_depth = M::io_fifo_depth;  // pragma values
    (void)stripe_depth;
    (void)io_depth;
#pragma HLS STREAM variable = stripes depth = stripe_depth
    TELLME_PRAGMA(HLS BIND_STORAGE variable = stripes type = fifo impl = TELLME_FIFO_STORAGE)
#pragma HLS STREAM variable = io depth = io_depth
    prefetch<M>(w0, w1, w2, w3, w4, w5, w6, w7, k0, k1, k2, k3, k4, k5, k6, k7, params, hidden_in, first, b, row,
                head, stripes, io);
    engine<M>(stripes, io, kv_out, out, first, b, row, head);
}

// The top's body: check the range, then the blocks one after another.
template <class M>
int decoder_top(const word_t *w0, const word_t *w1, const word_t *w2, const word_t *w3, const word_t *w4,
                const word_t *w5, const word_t *w6, const word_t *w7, const word_t *k0, const word_t *k1,
                const word_t *k2, const word_t *k3, const word_t *k4, const word_t *k5, const word_t *k6,
                const word_t *k7, const word_t *params, const word_t *hidden_in, word_t *kv_out, word_t *out,
                unsigned n, unsigned pos) {
    const unsigned B = M::tlmm::max_block;
    if (n == 0 || pos >= M::max_context || n > M::max_context - pos) return DECODER_BAD_RANGE;
    const unsigned max_blocks = (M::max_context + B - 1) / B;
    (void)max_blocks;
BLOCKS:
    for (unsigned t0 = 0; t0 < n; t0 += B) {
#pragma HLS LOOP_TRIPCOUNT max = max_blocks
        const unsigned b = n - t0 < B ? n - t0 : B;
        decoder_block<M>(w0, w1, w2, w3, w4, w5, w6, w7, k0, k1, k2, k3, k4, k5, k6, k7, params, hidden_in, kv_out,
                         out, pos + t0, b, t0, t0 + b == n);
    }
    return DECODER_OK;
}

}  // namespace tellme

#endif
