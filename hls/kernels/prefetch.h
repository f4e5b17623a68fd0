// The prefetcher: one DATAFLOW process that walks a block's fixed schedule and streams everything the
// engine will need, in the order it will need it. Nothing it reads depends on what the engine computes
// (weights, the params, the block's embeddings, and K/V rows written by earlier calls or blocks), so it
// runs ahead as far as the FIFOs let it: loading never waits for compute.
//
// Per block of b tokens at positions first .. first+b-1 (io = the params / hidden port):
//   io       the block's embeddings, then its RoPE cos and sin half rows
//   layer l  io: the layer's params; stripes: qkv; stripes: the K/V rows below `first` (the whole
//            blocks in one burst, then the last block's K rows and V rows);
//            stripes: o, gate/up, down
//   io       the final norm's weight
//   stripes  the int8 LM head, when the block ends the call and the design has the head on the PL
// Each phase is one pipelined loop reading one word per stripe per cycle (P bundles in parallel, each a
// long sequential burst) or one io word per cycle. The readers stay functions of their own (INLINE off):
// inlined, reads of one bundle's two pointers would share a region, and HLS bursts neither (UG1399).
#ifndef TELLME_PREFETCH_H
#define TELLME_PREFETCH_H

#include "common.h"

namespace tellme {

static const unsigned MAX_PORTS = 8;  // the kernels take 8 stripe pointers; a design uses `ports` of them

// Stripe words [base, base + count) of every stripe.
template <class M>
void read_stripes(const word_t *w0, const word_t *w1, const word_t *w2, const word_t *w3, const word_t *w4,
                  const word_t *w5, const word_t *w6, const word_t *w7, unsigned base, unsigned count,
                  word_stream stripes[M::ports]) {
#pragma HLS INLINE off
    const unsigned max_count = M::max_phase_words;
    (void)max_count;
READ_STRIPES:
    for (unsigned i = 0; i < count; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_count
        TELLME_COUNT("read_stripes");
        if (M::ports > 0) stripes[0].write(w0[base + i]);
        if (M::ports > 1) stripes[1].write(w1[base + i]);
        if (M::ports > 2) stripes[2].write(w2[base + i]);
        if (M::ports > 3) stripes[3].write(w3[base + i]);
        if (M::ports > 4) stripes[4].write(w4[base + i]);
        if (M::ports > 5) stripes[5].write(w5[base + i]);
        if (M::ports > 6) stripes[6].write(w6[base + i]);
        if (M::ports > 7) stripes[7].write(w7[base + i]);
    }
}

// K/V words [offset, offset + count) of every stripe's region of the cache (stripe p at p * stripe words).
template <class M>
void read_kv(const word_t *k0, const word_t *k1, const word_t *k2, const word_t *k3, const word_t *k4,
             const word_t *k5, const word_t *k6, const word_t *k7, unsigned offset, unsigned count,
             word_stream stripes[M::ports]) {
#pragma HLS INLINE off
    const unsigned S = M::kv_stripe_words;
    const unsigned max_count = M::kv_layer_words;
    (void)max_count;
READ_KV:
    for (unsigned i = 0; i < count; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_count
        TELLME_COUNT("read_kv");
        if (M::ports > 0) stripes[0].write(k0[0 * S + offset + i]);
        if (M::ports > 1) stripes[1].write(k1[1 * S + offset + i]);
        if (M::ports > 2) stripes[2].write(k2[2 * S + offset + i]);
        if (M::ports > 3) stripes[3].write(k3[3 * S + offset + i]);
        if (M::ports > 4) stripes[4].write(k4[4 * S + offset + i]);
        if (M::ports > 5) stripes[5].write(k5[5 * S + offset + i]);
        if (M::ports > 6) stripes[6].write(k6[6 * S + offset + i]);
        if (M::ports > 7) stripes[7].write(k7[7 * S + offset + i]);
    }
}

// io words [base, base + count).
template <class M> void read_io(const word_t *src, unsigned base, unsigned count, word_stream &io) {
#pragma HLS INLINE off
    const unsigned max_count = M::max_io_words;
    (void)max_count;
READ_IO:
    for (unsigned i = 0; i < count; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_count
        TELLME_COUNT("read_io");
        io.write(src[base + i]);
    }
}

// The whole schedule of one block (see the file comment). `row` is the block's first token within the
// call (its embeddings' row in hidden_in); `head` streams the LM head after the layers.
template <class M>
void prefetch(const word_t *w0, const word_t *w1, const word_t *w2, const word_t *w3, const word_t *w4,
              const word_t *w5, const word_t *w6, const word_t *w7, const word_t *k0, const word_t *k1,
              const word_t *k2, const word_t *k3, const word_t *k4, const word_t *k5, const word_t *k6,
              const word_t *k7, const word_t *params, const word_t *hidden_in, unsigned first, unsigned b,
              unsigned row, bool head, word_stream stripes[M::ports], word_stream &io) {
    const unsigned F = FLOATS_PER_WORD;
    read_io<M>(hidden_in, row * (M::hidden_pad / F), b * (M::hidden_pad / F), io);
    read_io<M>(params, (M::p_rope_cos + first * M::rope_half_pad) / F, b * (M::rope_half_pad / F), io);
    read_io<M>(params, (M::p_rope_sin + first * M::rope_half_pad) / F, b * (M::rope_half_pad / F), io);
PREFETCH_LAYERS:
    for (unsigned l = 0; l < M::layers; l++) {
        read_io<M>(params, l * (M::p_layer_stride / F), M::p_layer_stride / F, io);
        const unsigned layer = l * M::layer_words;
        read_stripes<M>(w0, w1, w2, w3, w4, w5, w6, w7, layer + M::qkv_offset, M::qkv_rows * M::qkv_wpr, stripes);
        // the cache below `first`: whole blocks of R positions (R K rows, R V rows) in one burst, then
        // the K and V rows of the last, partial block
        const unsigned whole = first / M::kv_block, rest = first % M::kv_block;
        const unsigned cache = l * M::kv_layer_words, block_words = 2 * M::kv_block * M::kv_row_words;
        if (whole) read_kv<M>(k0, k1, k2, k3, k4, k5, k6, k7, cache, whole * block_words, stripes);
        if (rest) {
            read_kv<M>(k0, k1, k2, k3, k4, k5, k6, k7, cache + whole * block_words, rest * M::kv_row_words,
                       stripes);
            read_kv<M>(k0, k1, k2, k3, k4, k5, k6, k7, cache + whole * block_words + M::kv_block * M::kv_row_words,
                       rest * M::kv_row_words, stripes);
        }
        read_stripes<M>(w0, w1, w2, w3, w4, w5, w6, w7, layer + M::o_offset, M::o_rows * M::o_wpr, stripes);
        read_stripes<M>(w0, w1, w2, w3, w4, w5, w6, w7, layer + M::gateup_offset, M::gateup_rows * M::gateup_wpr,
                        stripes);
        read_stripes<M>(w0, w1, w2, w3, w4, w5, w6, w7, layer + M::down_offset, M::down_rows * M::down_wpr,
                        stripes);
    }
    read_io<M>(params, M::p_final_norm / F, M::hidden_pad / F, io);
    if (M::lm_head && head) {
        read_stripes<M>(w0, w1, w2, w3, w4, w5, w6, w7, M::head_offset, M::head_rows * M::head_row_words, stripes);
    }
}

}  // namespace tellme

#endif
