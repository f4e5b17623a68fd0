// The whole decoder stack for n tokens at positions [pos, pos + n): every layer and the final norm.
// The host gathers embeddings into hidden_in and applies the LM head to hidden_out.
//
// Per token and layer (the same order as tellme.models.reference and transformers' BitNet):
//   xq  = quant(rmsnorm(h, input_layernorm))
//   q, k, v = TLMM(xq); RoPE(q, k) at the token's position; K, V appended to the fp16 cache
//   a   = attention(q, K[0..p], V[0..p])                     (online softmax, GQA)
//   h  += TLMM_o(quant(rmsnorm(a, attn_sub_norm)))
//   xq  = quant(rmsnorm(h, post_attention_layernorm))
//   m   = act(TLMM_gate(xq)) * TLMM_up(xq)
//   h  += TLMM_down(quant(rmsnorm(m, ffn_sub_norm)))
// then hidden_out = rmsnorm(h, norm).
//
// MODEL_T (generated into config.h) gives the shape and the DDR image offsets, built by
// tellme.models.ddr_image: weights in AXI words, params in floats. KV cache per layer:
// cache[layer][position][kv_head][head_dim], fp16 bit patterns, k_cache and v_cache on separate ports.
// This first version runs prefill as a loop of decode steps.
#ifndef TELLME_DECODER_H
#define TELLME_DECODER_H

#include <stdint.h>

#include "attention.h"
#include "elementwise.h"
#include "tlmm.h"

namespace tellme {

enum decoder_status { DECODER_OK = 0, DECODER_BAD_RANGE = 1 };

template <class MODEL_T, class TLMM_T>
int decoder_forward(const typename tlmm_types<TLMM_T>::word_t *weights, const float *params, uint16_t *k_cache,
                    uint16_t *v_cache, const float *hidden_in, float *hidden_out, unsigned n, unsigned pos) {
    typedef MODEL_T M;
    if (n == 0 || pos >= M::max_context || n > M::max_context - pos) return DECODER_BAD_RANGE;

    static float h[M::hidden], normed[M::max_dim], y[M::hidden];
    static float q[M::q_size], k[M::kv_size], v[M::kv_size], att[M::q_size];
    static float gate[M::intermediate], up[M::intermediate], mlp[M::intermediate];
    static int8_t xq[M::max_dim];
    const unsigned layer_cache = M::max_context * M::kv_size;

TOKENS:
    for (unsigned t = 0; t < n; t++) {
#pragma HLS LOOP_TRIPCOUNT max = 1
        const unsigned p = pos + t;
    LOAD_HIDDEN:
        for (unsigned i = 0; i < M::hidden; i++) {
#pragma HLS PIPELINE II = 1
            h[i] = hidden_in[t * M::hidden + i];
        }
        const float *cos_row = params + M::p_rope_cos + p * M::head_dim;
        const float *sin_row = params + M::p_rope_sin + p * M::head_dim;
    LAYERS:
        for (unsigned l = 0; l < M::layers; l++) {
            const float *lp = params + l * M::p_layer_stride;
            const float *s_w = lp + M::p_scales;
            const typename tlmm_types<TLMM_T>::word_t *lw = weights + l * M::w_layer_stride;
            uint16_t *kc = k_cache + l * layer_cache;
            uint16_t *vc = v_cache + l * layer_cache;
            float s_x;

            rmsnorm_quant<M::max_dim>(h, lp + M::p_input_layernorm, M::eps, M::hidden, normed, xq, s_x);
            tlmm_matvec<TLMM_T>(lw + M::w_q_proj, xq, s_x, s_w[0], q, M::hidden, M::q_size);
            tlmm_matvec<TLMM_T>(lw + M::w_k_proj, xq, s_x, s_w[1], k, M::hidden, M::kv_size);
            tlmm_matvec<TLMM_T>(lw + M::w_v_proj, xq, s_x, s_w[2], v, M::hidden, M::kv_size);
            rope<M::head_dim>(q, M::heads, cos_row, sin_row);
            rope<M::head_dim>(k, M::kv_heads, cos_row, sin_row);
            kv_append<M::head_dim>(k, v, M::kv_heads, p, kc, vc);
            decode_attention<M::head_dim, M::heads>(q, M::heads, M::kv_heads, p + 1, kc, vc, att);

            rmsnorm_quant<M::max_dim>(att, lp + M::p_attn_sub_norm, M::eps, M::q_size, normed, xq, s_x);
            tlmm_matvec<TLMM_T>(lw + M::w_o_proj, xq, s_x, s_w[3], y, M::q_size, M::hidden);
            residual_add<M::hidden>(h, y, M::hidden);

            rmsnorm_quant<M::max_dim>(h, lp + M::p_post_attention_layernorm, M::eps, M::hidden, normed, xq, s_x);
            tlmm_matvec<TLMM_T>(lw + M::w_gate_proj, xq, s_x, s_w[4], gate, M::hidden, M::intermediate);
            tlmm_matvec<TLMM_T>(lw + M::w_up_proj, xq, s_x, s_w[5], up, M::hidden, M::intermediate);
            gate_up<M::intermediate>(gate, up, M::act, M::intermediate, mlp);
            rmsnorm_quant<M::max_dim>(mlp, lp + M::p_ffn_sub_norm, M::eps, M::intermediate, normed, xq, s_x);
            tlmm_matvec<TLMM_T>(lw + M::w_down_proj, xq, s_x, s_w[6], y, M::intermediate, M::hidden);
            residual_add<M::hidden>(h, y, M::hidden);
        }
        rmsnorm<M::hidden>(h, params + M::p_final_norm, M::eps, M::hidden, hidden_out + t * M::hidden);
    }
    return DECODER_OK;
}

}  // namespace tellme

#endif
