// The whole decoder stack for n tokens at positions [pos, pos + n): every layer and the final norm.
// The host gathers embeddings into hidden_in and applies the LM head to hidden_out.
//
// Tokens go through in blocks of up to B = TLMM_T::max_block, layer by layer: within a layer each
// weight tile is read from DDR once for the whole block (tlmm_block), and attention runs TeLLMe's
// reversed-order block attention. Decode is the block of one. Per token and layer (the order of
// tellme.models.reference and transformers' BitNet):
//   xq  = quant(rmsnorm(h, input_layernorm))
//   q, k, v = TLMM(xq); RoPE(q, k) at the token's position; K, V appended to the fp16 cache
//   a   = attention(q, K[0..p], V[0..p])                     (online softmax, GQA)
//   h  += TLMM_o(quant(rmsnorm(a, attn_sub_norm)))
//   xq  = quant(rmsnorm(h, post_attention_layernorm))
//   m   = act(TLMM_gate(xq)) * TLMM_up(xq)
//   h  += TLMM_down(quant(rmsnorm(m, ffn_sub_norm)))
// then hidden_out = rmsnorm(h, norm). A token's arithmetic does not depend on the block it is in, so
// a prefill of n tokens computes exactly what n decode calls compute.
//
// MODEL_T (generated into config.h as model_config) gives the shape, the DDR image offsets built by
// tellme.models.ddr_image (weights in AXI words, params in floats) and, as nested types, the configs of
// the element-wise unit (MODEL_T::elementwise) and of attention (MODEL_T::attention). KV cache per layer:
// cache[layer][position][kv_head][head_dim], fp16 bit patterns, k_cache and v_cache on separate ports.
#ifndef TELLME_DECODER_H
#define TELLME_DECODER_H

#include <stdint.h>

#include "attention.h"
#include "elementwise.h"
#include "tlmm.h"

namespace tellme {

enum decoder_status { DECODER_OK = 0, DECODER_BAD_RANGE = 1 };

// Norm + int8 quantisation of every token of a block: rows of x (stride x_stride) -> xq, s_x.
template <class MODEL_T, unsigned B>
void block_norm_quant(const float *x, unsigned x_stride, const float *weight, unsigned dim, unsigned b,
                      int8_t xq[B][MODEL_T::max_dim], float s_x[B]) {
    static float normed[MODEL_T::max_dim];
norm_tokens:
    for (unsigned t = 0; t < b; t++) {
#pragma HLS LOOP_TRIPCOUNT max = B
        rmsnorm_quant<typename MODEL_T::elementwise>(x + t * x_stride, weight, MODEL_T::eps, dim, normed, xq[t],
                                                     s_x[t]);
    }
}

template <class MODEL_T, class TLMM_T>
int decoder_forward(const typename tlmm_types<TLMM_T>::word_t *weights, const float *params, uint16_t *k_cache,
                    uint16_t *v_cache, const float *hidden_in, float *hidden_out, unsigned n, unsigned pos) {
    typedef MODEL_T M;
    typedef typename M::elementwise EW;
    typedef typename M::attention ATT;
    const unsigned B = TLMM_T::max_block;
    const unsigned chunk = TLMM_T::G * TLMM_T::T, head_dim = M::head_dim;
    if (n == 0 || pos >= M::max_context || n > M::max_context - pos) return DECODER_BAD_RANGE;

    static float h[B][M::hidden], y[B][M::hidden];
    static float q[B][M::q_size], k[B][M::kv_size], v[B][M::kv_size], att[B][M::q_size];
    // attention reads a head's head_dim query values for every PE in one cycle
#pragma HLS ARRAY_PARTITION variable = q dim = 1 complete
#pragma HLS ARRAY_PARTITION variable = q cyclic factor = head_dim dim = 2
    static float gate[B][M::intermediate], up[B][M::intermediate];
    static int8_t xq[B][M::max_dim];
    // the TLMM reads one index vector's worth of activations (G*T bytes) per cycle
#pragma HLS ARRAY_RESHAPE variable = xq cyclic factor = chunk dim = 2
    static float s_x[B];
    const unsigned layer_cache = M::max_context * M::kv_size;
    const unsigned max_blocks = (M::max_context + B - 1) / B;

BLOCKS:
    for (unsigned t0 = 0; t0 < n; t0 += B) {
#pragma HLS LOOP_TRIPCOUNT max = max_blocks
        const unsigned b = n - t0 < B ? n - t0 : B;
        const unsigned first = pos + t0;  // position of the block's first token
    LOAD_HIDDEN:
        for (unsigned t = 0; t < b; t++) {
            for (unsigned i = 0; i < M::hidden; i++) {
#pragma HLS PIPELINE II = 1
                h[t][i] = hidden_in[(t0 + t) * M::hidden + i];
            }
        }
    LAYERS:
        for (unsigned l = 0; l < M::layers; l++) {
            const float *lp = params + l * M::p_layer_stride;
            const float *s_w = lp + M::p_scales;
            const typename tlmm_types<TLMM_T>::word_t *lw = weights + l * M::w_layer_stride;
            uint16_t *kc = k_cache + l * layer_cache;
            uint16_t *vc = v_cache + l * layer_cache;

            // attention
            block_norm_quant<M, B>(h[0], M::hidden, lp + M::p_input_layernorm, M::hidden, b, xq, s_x);
            tlmm_block<TLMM_T>(lw + M::w_q_proj, xq[0], M::max_dim, s_x, s_w[0], q[0], M::q_size, M::hidden,
                               M::q_size, b);
            tlmm_block<TLMM_T>(lw + M::w_k_proj, xq[0], M::max_dim, s_x, s_w[1], k[0], M::kv_size, M::hidden,
                               M::kv_size, b);
            tlmm_block<TLMM_T>(lw + M::w_v_proj, xq[0], M::max_dim, s_x, s_w[2], v[0], M::kv_size, M::hidden,
                               M::kv_size, b);
        ROPE_APPEND:
            for (unsigned t = 0; t < b; t++) {
                const float *cos_row = params + M::p_rope_cos + (first + t) * M::head_dim;
                const float *sin_row = params + M::p_rope_sin + (first + t) * M::head_dim;
                rope<EW>(q[t], M::heads, cos_row, sin_row);
                rope<EW>(k[t], M::kv_heads, cos_row, sin_row);
                kv_append<ATT>(k[t], v[t], M::kv_heads, first + t, kc, vc);
            }
            attention_block<ATT>(q[0], M::q_size, b, first, M::heads, M::kv_heads, kc, vc, att[0], M::q_size);
            block_norm_quant<M, B>(att[0], M::q_size, lp + M::p_attn_sub_norm, M::q_size, b, xq, s_x);
            tlmm_block<TLMM_T>(lw + M::w_o_proj, xq[0], M::max_dim, s_x, s_w[3], y[0], M::hidden, M::q_size,
                               M::hidden, b);
        RESIDUAL_ATTN:
            for (unsigned t = 0; t < b; t++) residual_add<EW>(h[t], y[t], M::hidden);

            // feed-forward
            block_norm_quant<M, B>(h[0], M::hidden, lp + M::p_post_attention_layernorm, M::hidden, b, xq, s_x);
            tlmm_block<TLMM_T>(lw + M::w_gate_proj, xq[0], M::max_dim, s_x, s_w[4], gate[0], M::intermediate,
                               M::hidden, M::intermediate, b);
            tlmm_block<TLMM_T>(lw + M::w_up_proj, xq[0], M::max_dim, s_x, s_w[5], up[0], M::intermediate,
                               M::hidden, M::intermediate, b);
        GATE_UP:
            for (unsigned t = 0; t < b; t++) {
                gate_up<EW>(gate[t], up[t], M::act, M::intermediate, gate[t]);  // in place
            }
            block_norm_quant<M, B>(gate[0], M::intermediate, lp + M::p_ffn_sub_norm, M::intermediate, b, xq, s_x);
            tlmm_block<TLMM_T>(lw + M::w_down_proj, xq[0], M::max_dim, s_x, s_w[6], y[0], M::hidden,
                               M::intermediate, M::hidden, b);
        RESIDUAL_MLP:
            for (unsigned t = 0; t < b; t++) residual_add<EW>(h[t], y[t], M::hidden);
        }
    FINAL_NORM:
        for (unsigned t = 0; t < b; t++) {
            rmsnorm<EW>(h[t], params + M::p_final_norm, M::eps, M::hidden, hidden_out + (t0 + t) * M::hidden);
        }
    }
    return DECODER_OK;
}

}  // namespace tellme

#endif
