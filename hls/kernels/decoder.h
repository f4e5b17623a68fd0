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
//   final   norm(h, norm)                      -> hidden states out, or the int8 LM head (lm_head.h; the
//                                                 two-pass head's second pass follows the last block)
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
enum scale_index { S_Q = 0, S_K = 1, S_V = 2, S_O = 3, S_GATE = 4, S_UP = 5, S_DOWN = 6 };

// The engine's on-chip buffers, one struct so that the TLMM's dequantisation can reach the ones its
// step writes. act holds each token's residual stream h, attention output and gate x up product.
template <class M> struct engine_buffers {
    typedef attention_arrays<typename M::attention> AA;
    static const unsigned B = M::tlmm::max_block;
    float act[B][M::act_dim];
    typename AA::q_t q;  // rotated queries, heads padded
    typename AA::kvcur_t kcur;  // the block's K rows (fp16), as the stripes carry them
    typename AA::kvcur_t vcur;
    float rope_cos[B][M::rope_half_pad];
    float rope_sin[B][M::rope_half_pad];
};

// What a matrix's dequantised outputs do: the tail of the step (see the file comment). One put a cycle,
// from the TLMM's lookup loop; each writes at most one value to each array, and what it keeps from one
// put to the next is in registers. Pairs of rows arrive as consecutive puts (the TLMM puts a row-step's
// P rows of one token in order, P even):
//   qkv     q and k rows come in RoPE pairs (tellme.models.ddr_image: value d, then d + head_dim/2); the
//           first waits in `first`, the second rotates both, writes its own and holds the other, which
//           the next put writes (its own write, if any, goes to another array) or finish() does
//   gateup  a gate row waits in `gate` for its up row
//   o, down y goes to the step's input region of act (consumed by the step's norm); residual() adds it
template <class M> struct step_sink {
    unsigned kind;
    float s_q, s_k, s_v, s_o, s_gate, s_up, s_down;  // the step's weight divisors
    float gate, first, held;
    unsigned held_tok, held_at;
    bool held_key, holding;

    void set_scales(const float scales[8]) {
#pragma HLS INLINE
        s_q = scales[S_Q];
        s_k = scales[S_K];
        s_v = scales[S_V];
        s_o = scales[S_O];
        s_gate = scales[S_GATE];
        s_up = scales[S_UP];
        s_down = scales[S_DOWN];
        holding = false;
    }

    static void store(engine_buffers<M> &bf, unsigned tok, unsigned at, float value, bool key) {
#pragma HLS INLINE
        const unsigned L = M::attention::lanes, CH = M::attention::chunk;
        if (key) {
            bf.kcur[tok][at / CH][(at % CH) / HALVES_PER_WORD][at % HALVES_PER_WORD] = float_to_half(value);
        } else {
            bf.q[tok][at / L][at % L] = value;
        }
    }

    void flush(engine_buffers<M> &bf) {
#pragma HLS INLINE
        if (holding) store(bf, held_tok, held_at, held, held_key);
        holding = false;
    }

    void put(engine_buffers<M> &bf, unsigned tok, unsigned row, acc_t acc, float s_x) {
#pragma HLS INLINE
        const unsigned half = M::head_dim / 2;
        const bool rope_row = kind == STEP_QKV && row < M::q_size + M::kv_size;
        const float s_w = kind == STEP_QKV ? (row < M::q_size ? s_q : row < M::q_size + M::kv_size ? s_k : s_v)
                        : kind == STEP_GATEUP ? (row % 2 ? s_up : s_gate)
                        : kind == STEP_O ? s_o : s_down;
        const float y = float(int(acc)) / (s_x * s_w);  // one divider for every step
        // one rotated value to q or kcur a put, at one store site: the second of a pair stores its own,
        // any other put the one held since the previous put
        bool write = false, write_key = false;
        unsigned write_tok = 0, write_at = 0;
        float write_value = 0.0f;
        const bool second = rope_row && row % 2;
        if (!second && holding) {
            write = true;
            write_tok = held_tok;
            write_at = held_at;
            write_value = held;
            write_key = held_key;
        }
        if (!second) holding = false;
        if (rope_row) {
            const bool key = row >= M::q_size;
            const unsigned r = key ? row - M::q_size : row, pair = r / 2;
            const unsigned d = pair % half, base = (pair / half) * M::head_dim_pad;
            if (!second) {
                first = y;
            } else {
                const float x1 = first, x2 = y;
                const float c = bf.rope_cos[tok][d], s = bf.rope_sin[tok][d];
                write = true;
                write_tok = tok;
                write_at = base + d + half;
                write_value = x2 * c + x1 * s;
                write_key = key;
                held = x1 * c + (-x2) * s;
                held_tok = tok;
                held_at = base + d;
                held_key = key;
                holding = true;
            }
        } else if (kind == STEP_QKV) {
            const unsigned r = row - M::q_size - M::kv_size;
            if (r < M::kv_size) {
                const unsigned at = (r / M::head_dim) * M::head_dim_pad + r % M::head_dim;
                const unsigned CH = M::attention::chunk;
                bf.vcur[tok][at / CH][(at % CH) / HALVES_PER_WORD][at % HALVES_PER_WORD] = float_to_half(y);
            }
        } else if (kind == STEP_GATEUP) {
            if (row < 2 * M::intermediate) {
                if (row % 2 == 0) gate = y;
                else bf.act[tok][M::act_m + row / 2] = activate(gate, M::act) * y;
            }
        } else if (row < M::hidden) {  // o, down: into the step's input region, added by residual()
            bf.act[tok][(kind == STEP_O ? M::act_att : M::act_m) + row] = y;
        }
        if (write) store(bf, write_tok, write_at, write_value, write_key);
    }

    void finish(engine_buffers<M> &bf) {
#pragma HLS INLINE
        flush(bf);
    }
};

// Zeros into the padding of every head (head_dim .. head_dim_pad) of q, k and v: attention multiplies
// whole chunks and write_kv stores whole words, and the engine's buffers are not static in synthesis.
template <class M> void clear_padding(engine_buffers<M> &bf, unsigned b) {
    const unsigned PAD = M::head_dim_pad - M::head_dim, L = M::attention::lanes, CH = M::attention::chunk;
    const unsigned max_iters = M::tlmm::max_block * M::heads * PAD;
    (void)max_iters;
    unsigned t = 0, h = 0, d = 0;
CLEAR_PADDING:
    for (unsigned it = 0; it < b * M::heads * PAD; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
        TELLME_COUNT("clear_padding");
        const unsigned at = h * M::head_dim_pad + M::head_dim + d;
        bf.q[t][at / L][at % L] = 0.0f;
        if (h < M::kv_heads) {
            bf.kcur[t][at / CH][(at % CH) / HALVES_PER_WORD][at % HALVES_PER_WORD] = 0;
            bf.vcur[t][at / CH][(at % CH) / HALVES_PER_WORD][at % HALVES_PER_WORD] = 0;
        }
        if (d == PAD - 1) {
            d = 0;
            if (h == M::heads - 1) {
                h = 0;
                t++;
            } else {
                h++;
            }
        } else {
            d++;
        }
    }
}

// h += the o or down output left in act from `from` (a multiple of the lanes), V lanes a cycle. Each
// bank is read twice and written once an iteration, so the loop runs at II=2.
template <class M> void residual(float act[M::tlmm::max_block][M::act_dim], unsigned b, unsigned from) {
    const unsigned V = M::elementwise::lanes, sets = (M::hidden + V - 1) / V, base = from / V;
    const unsigned max_iters = M::tlmm::max_block * sets;
    (void)max_iters;
    unsigned t = 0, i = 0;
RESIDUAL:
    for (unsigned it = 0; it < b * sets; it++) {
#pragma HLS PIPELINE II = 2
#pragma HLS LOOP_TRIPCOUNT max = max_iters
#pragma HLS DEPENDENCE variable = act inter false
        TELLME_COUNT("residual");  // each value read and written by its own iteration only
        for (unsigned v = 0; v < V; v++) {
#pragma HLS UNROLL
            if (V * i + v < M::hidden) act[t][V * i + v] = act[t][V * i + v] + act[t][V * (base + i) + v];
        }
        if (i == sets - 1) {
            i = 0;
            t++;
        } else {
            i++;
        }
    }
}

// `words` words of four floats from io into dst[row] from `offset` (a multiple of V), written as whole
// lane sets of V floats: dst is cyclically partitioned by V, and a lane set's V writes land in its V
// banks, one each, whatever the offset (a gearbox: a word comes in when fewer than V floats wait, a set
// goes out when V are there; the last set is completed with zeros, into the region's padding). With
// V >= 4 that is a word every iteration; with V = 3, four sets take three words.
template <class M, unsigned V, unsigned ROWS, unsigned DIM>
void read_floats(word_stream &io, unsigned words, float dst[ROWS][DIM], unsigned row, unsigned offset) {
    const unsigned F = FLOATS_PER_WORD, max_iters = (DIM + V - 1) / V + DIM / F + 1;
    (void)max_iters;
    float buf[V + F - 1];
#pragma HLS ARRAY_PARTITION variable = buf complete
    const unsigned iters = V >= F ? words + 1 : (F * words + V - 1) / V + 1;
    unsigned have = 0, read = 0, set = offset / V;
READ_FLOATS:
    for (unsigned i = 0; i < iters; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
        TELLME_COUNT("read_floats");
        if (have < V && read < words) {
            const word_t w = io.read();
            const uint64_t lo = word_lo(w), hi = word_hi(w);
            for (unsigned k = 0; k < F; k++) {
#pragma HLS UNROLL
                buf[have + k] = word_float(lo, hi, k);
            }
            have += F;
            read++;
        }
        if (have >= V || (read == words && have > 0)) {
            for (unsigned v = 0; v < V; v++) {
#pragma HLS UNROLL
                dst[row][V * set + v] = v < have ? buf[v] : 0.0f;
            }
            for (unsigned v = 0; v < F - 1; v++) {
#pragma HLS UNROLL
                buf[v] = buf[v + V];
            }
            have = have > V ? have - V : 0;
            set++;
        }
    }
}

// A layer's params: the four norm weights and the seven weight divisors (ddr_image's param layout).
// The norm weights sit one after another in normw (offsets M::norm_offset_*, multiples of the lanes).
template <class M>
void read_layer_params(word_stream &io, float normw[1][M::norm_total], float scales[8]) {
    const unsigned F = FLOATS_PER_WORD;
    read_floats<M, M::elementwise::lanes, 1, M::norm_total>(io, M::hidden_pad / F, normw, 0, M::norm_offset_input);
    read_floats<M, M::elementwise::lanes, 1, M::norm_total>(io, M::hidden_pad / F, normw, 0, M::norm_offset_post);
    read_floats<M, M::elementwise::lanes, 1, M::norm_total>(io, M::q_size_pad / F, normw, 0, M::norm_offset_attn_sub);
    read_floats<M, M::elementwise::lanes, 1, M::norm_total>(io, M::intermediate_pad / F, normw, 0, M::norm_offset_ffn_sub);
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
// chunks (ddr_image's K/V layout), written through kv_out. One inner loop per (token, K or V, stripe)
// writes that share's RW consecutive words: one burst each.
template <class M>
void write_kv(const engine_buffers<M> &bf, unsigned layer, unsigned first, unsigned b, word_t *kv_out) {
    const unsigned P = M::ports, RW = M::kv_row_words;
    const unsigned max_shares = M::tlmm::max_block * 2 * M::ports, max_words = M::kv_row_words;
    (void)max_shares;
    (void)max_words;
    unsigned p = 0, which = 0, tok = 0;
WRITE_KV_SHARES:
    for (unsigned n = 0; n < b * 2 * P; n++) {
#pragma HLS LOOP_TRIPCOUNT max = max_shares
        const unsigned pos = first + tok, block = pos / M::kv_block, r = pos % M::kv_block;
        const unsigned base = p * M::kv_stripe_words + layer * M::kv_layer_words +
                              (block * 2 * M::kv_block + r + (which ? M::kv_block : 0)) * RW;
    WRITE_KV:
        for (unsigned w = 0; w < RW; w++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_words
            TELLME_COUNT("write_kv");
            uint64_t lo = 0, hi = 0;
            for (unsigned h = 0; h < HALVES_PER_WORD; h++) {
#pragma HLS UNROLL
                const uint64_t bits = which ? bf.vcur[tok][w][p][h] : bf.kcur[tok][w][p][h];
                if (h < 4) lo |= bits << (16 * h);
                else hi |= bits << (16 * (h - 4));
            }
            kv_out[base + w] = make_word(lo, hi);
        }
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
    }
}

// Hidden states out: row `row` of out, four floats a word, read from y in lane sets of V (a gearbox, the
// reverse of read_floats': when fewer than four floats wait, the next ceil(4 / V) sets come in, each
// read of y from its own bank).
template <class M>
void write_hidden(const float y[1][M::norm_dim], unsigned row, word_t *out) {
    const unsigned V = M::elementwise::lanes, F = FLOATS_PER_WORD, words = M::hidden_pad / F;
    const unsigned SETS = (F + V - 1) / V;  // sets a refill
    float buf[SETS * V + F - 1];
#pragma HLS ARRAY_PARTITION variable = buf complete
    unsigned have = 0, set = 0;
WRITE_HIDDEN:
    for (unsigned i = 0; i < words; i++) {
#pragma HLS PIPELINE II = 1
        TELLME_COUNT("write_hidden");
        if (have < F) {
            for (unsigned k = 0; k < SETS; k++) {
#pragma HLS UNROLL
                for (unsigned v = 0; v < V; v++) {
#pragma HLS UNROLL
                    buf[have + V * k + v] = y[0][V * (set + k) + v];
                }
            }
            have += SETS * V;
            set += SETS;
        }
        uint64_t lo = 0, hi = 0;
        for (unsigned k = 0; k < F; k++) {
#pragma HLS UNROLL
            const uint64_t bits = F * i + k < M::hidden ? uint64_t(float_to_bits(buf[k])) : 0;
            if (k < 2) lo |= bits << (32 * k);
            else hi |= bits << (32 * (k - 2));
        }
        out[row * words + i] = make_word(lo, hi);
        for (unsigned v = 0; v + F < SETS * V + F - 1; v++) {
#pragma HLS UNROLL
            buf[v] = buf[v + F];
        }
        have -= F;
    }
}

// The int8 vector the LM head reads, head_lanes values a word (16, or 32 for the two-pass head's nibble
// words), from the final norm's groups of three.
template <class M, unsigned B, unsigned G5>
void head_vector(const int8_t xq[B][G5][5][3], unsigned tok,
                 int8_t xh[M::head_values / M::head_lanes][M::head_lanes]) {
HEAD_VECTOR:
    for (unsigned i = 0; i < M::head_values; i++) {
#pragma HLS PIPELINE II = 1
        TELLME_COUNT("head_vector");
        const unsigned g = i / 3;
        xh[i / M::head_lanes][i % M::head_lanes] = i < M::hidden ? xq[tok][g / 5][g % 5][i % 3] : int8_t(0);
    }
}

// One block of the engine: b tokens at positions first .. first+b-1, embeddings at row `row` of the
// call; `head`: this block ends the call and the design's LM head runs on its last token.
template <class M>
void engine(word_stream stripes[M::ports], word_stream &io, word_t *kv_out, word_t *out, unsigned first,
            unsigned b, unsigned row, bool head, int8_t xh[M::head_values / M::head_lanes][M::head_lanes],
            float s_head[1], unsigned candidates[M::head_candidates]) {
    typedef typename M::tlmm TL;
    typedef typename M::attention AT;
    typedef typename M::elementwise EW;
    typedef tlmm_arrays<TL> TA;
    typedef attention_arrays<AT> AA;
    const unsigned B = TL::max_block;

    TELLME_STATIC engine_buffers<M> bf;
    TELLME_STATIC float normw[1][M::norm_total];
    TELLME_STATIC float y[1][M::norm_dim];
    TELLME_STATIC typename TA::xq_t xq;
    float s_x[B];
    TELLME_STATIC typename TA::table_t table;
    TELLME_STATIC typename TA::tile_t tile;
    TELLME_STATIC typename AA::kvbuf_t kvbuf;
    float att_m[B][AT::heads], att_l[B][AT::heads];
    TELLME_STATIC typename AA::acc_t att_acc;
    const unsigned ew = EW::lanes;  // pragma value
    (void)ew;
    // Banks (hls/fit.py counts them): an array read or written many values a cycle has them in a
    // completely partitioned dimension, or cyclic banks indexed V * i + v, so every access has its bank.
#pragma HLS ARRAY_PARTITION variable = bf.act cyclic factor = ew dim = 2
    TELLME_PRAGMA(HLS BIND_STORAGE variable = bf.act type = ram_t2p impl = TELLME_ACT_STORAGE)
#pragma HLS ARRAY_PARTITION variable = bf.q complete dim = 3
#pragma HLS ARRAY_PARTITION variable = bf.kcur complete dim = 3
#pragma HLS ARRAY_PARTITION variable = bf.kcur complete dim = 4
#pragma HLS BIND_STORAGE variable = bf.kcur type = ram_s2p impl = lutram
#pragma HLS ARRAY_PARTITION variable = bf.vcur complete dim = 3
#pragma HLS ARRAY_PARTITION variable = bf.vcur complete dim = 4
#pragma HLS BIND_STORAGE variable = bf.vcur type = ram_s2p impl = lutram
#pragma HLS ARRAY_PARTITION variable = bf.rope_cos cyclic factor = 4 dim = 2
#pragma HLS ARRAY_PARTITION variable = bf.rope_sin cyclic factor = 4 dim = 2
#pragma HLS ARRAY_PARTITION variable = normw cyclic factor = ew dim = 2
#pragma HLS ARRAY_PARTITION variable = y cyclic factor = ew dim = 2
#pragma HLS ARRAY_PARTITION variable = xq complete dim = 3
#pragma HLS ARRAY_PARTITION variable = xq complete dim = 4
#pragma HLS ARRAY_PARTITION variable = table complete dim = 1
#pragma HLS ARRAY_PARTITION variable = table complete dim = 2
#pragma HLS ARRAY_RESHAPE variable = table complete dim = 4
#pragma HLS BIND_STORAGE variable = table type = ram_s2p impl = lutram
#pragma HLS ARRAY_PARTITION variable = tile complete dim = 1
    TELLME_PRAGMA(HLS BIND_STORAGE variable = tile type = ram_s2p impl = TELLME_TILE_STORAGE)
#pragma HLS ARRAY_PARTITION variable = kvbuf complete dim = 4
#pragma HLS BIND_STORAGE variable = kvbuf type = ram_s2p impl = bram
#pragma HLS ARRAY_PARTITION variable = att_acc complete dim = 3

    const unsigned F = FLOATS_PER_WORD;
EMBEDDINGS:
    for (unsigned t = 0; t < b; t++) {
#pragma HLS LOOP_TRIPCOUNT max = B
        read_floats<M, M::elementwise::lanes, B, M::act_dim>(io, M::hidden_pad / F, bf.act, t, 0);
    }
ROPE_ROWS:
    for (unsigned t = 0; t < 2 * b; t++) {
#pragma HLS LOOP_TRIPCOUNT max = 2 * B
        if (t < b) read_floats<M, F, B, M::rope_half_pad>(io, M::rope_half_pad / F, bf.rope_cos, t, 0);
        else read_floats<M, F, B, M::rope_half_pad>(io, M::rope_half_pad / F, bf.rope_sin, t - b, 0);
    }

    clear_padding<M>(bf, b);

    step_sink<M> sink;
    sink.holding = false;
    float scales[8];
#pragma HLS ARRAY_PARTITION variable = scales complete
    const unsigned steps = 4 * M::layers + 1;
STEPS:
    for (unsigned step = 0; step < steps; step++) {
#pragma HLS LOOP_TRIPCOUNT max = steps
        const unsigned layer = step / 4;
        const unsigned kind = step == steps - 1 ? unsigned(STEP_FINAL) : step % 4;
        if (kind == STEP_QKV) {
            read_layer_params<M>(io, normw, scales);
            sink.set_scales(scales);
        }
        if (kind == STEP_FINAL)
            read_floats<M, M::elementwise::lanes, 1, M::norm_total>(io, M::hidden_pad / F, normw, 0,
                                                                    M::norm_offset_final);
        sink.kind = kind;

        // the step's norm and quantisation, one token at a time (one call site)
        const unsigned src = kind == STEP_O ? M::act_att : kind == STEP_DOWN ? M::act_m : 0u;
        const unsigned n = kind == STEP_O ? M::q_size : kind == STEP_DOWN ? M::intermediate : M::hidden;
        const unsigned woffset = kind == STEP_QKV ? M::norm_offset_input : kind == STEP_O ? M::norm_offset_attn_sub
                               : kind == STEP_GATEUP ? M::norm_offset_post : kind == STEP_DOWN ? M::norm_offset_ffn_sub
                               : M::norm_offset_final;
        const unsigned wpr = kind == STEP_QKV ? M::qkv_wpr : kind == STEP_O ? M::o_wpr
                           : kind == STEP_GATEUP ? M::gateup_wpr : kind == STEP_DOWN ? M::down_wpr : M::final_wpr;
        const unsigned rows = kind == STEP_QKV ? M::qkv_rows : kind == STEP_O ? M::o_rows
                            : kind == STEP_GATEUP ? M::gateup_rows : M::down_rows;
    NORM_TOKENS:
        for (unsigned t = 0; t < b; t++) {
#pragma HLS LOOP_TRIPCOUNT max = B
            s_x[t] = norm_quant<EW, B, M::act_dim, M::norm_total, M::norm_dim, B, TA::max_groups>(
                bf.act, t, src, normw, woffset, M::eps, n, wpr * WORD_INDICES, y, xq, t);
            if (kind == STEP_FINAL && !M::lm_head) write_hidden<M>(y, row + t, out);
        }
        if (kind == STEP_FINAL) break;

        // the step's matrix (one call site: one TLMM engine for every matrix)
        tlmm_matrix<TL, step_sink<M>, engine_buffers<M> >(stripes, rows, wpr, xq, s_x, b, table, tile, sink, bf);
        if (kind == STEP_O || kind == STEP_DOWN) residual<M>(bf.act, b, kind == STEP_O ? M::act_att : M::act_m);

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
        head_vector<M, B, TA::max_groups / 5>(xq, b - 1, xh);
        s_head[0] = s_x[b - 1];
        lm_head<M>(stripes, xh, s_x[b - 1], out, candidates);
    }
}

// One block: the prefetcher and the engine, side by side. The prefetcher of a block reads K/V rows that
// the previous block's engine wrote (through another port): blocks must stay one after another, so
// BLOCKS in decoder_top is a plain loop (no DATAFLOW, no overlapping calls).
template <class M>
void decoder_block(const word_t *w0, const word_t *w1, const word_t *w2, const word_t *w3, const word_t *w4,
                   const word_t *w5, const word_t *w6, const word_t *w7, const word_t *k0, const word_t *k1,
                   const word_t *k2, const word_t *k3, const word_t *k4, const word_t *k5, const word_t *k6,
                   const word_t *k7, const word_t *params, const word_t *hidden_in, word_t *kv_out, word_t *out,
                   unsigned first, unsigned b, unsigned row, bool head,
                   int8_t xh[M::head_values / M::head_lanes][M::head_lanes], float s_head[1],
                   unsigned candidates[M::head_candidates]) {
#pragma HLS DATAFLOW
    word_stream stripes[M::ports];
    word_stream io;
    const unsigned stripe_depth = M::stripe_fifo_depth, io_depth = M::io_fifo_depth;  // pragma values
    (void)stripe_depth;
    (void)io_depth;
#pragma HLS STREAM variable = stripes depth = stripe_depth
    TELLME_PRAGMA(HLS BIND_STORAGE variable = stripes type = fifo impl = TELLME_FIFO_STORAGE)
#pragma HLS STREAM variable = io depth = io_depth
    TELLME_PRAGMA(HLS BIND_STORAGE variable = io type = fifo impl = TELLME_FIFO_STORAGE)
    prefetch<M>(w0, w1, w2, w3, w4, w5, w6, w7, k0, k1, k2, k3, k4, k5, k6, k7, params, hidden_in, first, b, row,
                head, stripes, io);
    engine<M>(stripes, io, kv_out, out, first, b, row, head, xh, s_head, candidates);
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
    // the LM head's input and candidates, for the two-pass head's second pass after the last block
    int8_t xh[M::head_values / M::head_lanes][M::head_lanes];
    float s_head[1];
    unsigned candidates[M::head_candidates];
#pragma HLS ARRAY_PARTITION variable = xh complete dim = 2
#pragma HLS ARRAY_PARTITION variable = candidates complete
BLOCKS:
    for (unsigned t0 = 0; t0 < n; t0 += B) {
#pragma HLS LOOP_TRIPCOUNT max = max_blocks
        const unsigned b = n - t0 < B ? n - t0 : B;
        decoder_block<M>(w0, w1, w2, w3, w4, w5, w6, w7, k0, k1, k2, k3, k4, k5, k6, k7, params, hidden_in, kv_out,
                         out, pos + t0, b, t0, t0 + b == n, xh, s_head, candidates);
    }
    if (M::lm_head && M::head_twopass)
        lm_head_rescore<M>(w0, w1, w2, w3, w4, w5, w6, w7, xh, s_head[0], candidates, out);
    return DECODER_OK;
}

}  // namespace tellme

#endif
