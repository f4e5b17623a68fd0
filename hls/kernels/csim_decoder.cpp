// C-simulation bridge for the decoder top: plain C entry points for tellme.hls.csim_decoder (ctypes).
// Compiled with the project's src/ into a shared library; never part of the synthesised design.
// Built with -fvisibility=hidden: only these symbols are exported.
#include <cstdio>
#include <vector>

#include "config.h"
#include "tb_io.h"

#define TELLME_EXPORT __attribute__((visibility("default")))

extern "C" {

// The shape and image sizes this library was compiled for, "key=value" separated by spaces.
TELLME_EXPORT int tellme_decoder_describe(char *out, unsigned size) {
    typedef tellme::model_config M;
    return std::snprintf(out, size,
                         "hidden=%u intermediate=%u layers=%u heads=%u kv_heads=%u head_dim=%u max_context=%u "
                         "act=%d eps=%.9g w_layer_stride=%u p_layer_stride=%u p_rope_cos=%u axi_width=%u Q=%u T=%u",
                         M::hidden, M::intermediate, M::layers, M::heads, M::kv_heads, M::head_dim, M::max_context,
                         M::act, double(M::eps), M::w_layer_stride, M::p_layer_stride, M::p_rope_cos,
                         tellme::tlmm_config::axi_width, tellme::tlmm_config::Q, tellme::tlmm_config::T);
}

// The weights image, as AXI words: loaded once, like the upload to the board's DDR.
static std::vector<tellme::axi_word_t> g_weights;

TELLME_EXPORT void tellme_decoder_load_weights(const uint8_t *weights, size_t weight_bytes) {
    g_weights = tellme_tb::to_words<tellme::tlmm_config::axi_width>(weights, weight_bytes);
}

// n tokens at positions [pos, pos + n) through every layer, with the loaded weights. params: the
// params image, k_cache / v_cache: [layers][max_context][kv_size] fp16 bits, updated in place;
// hidden_in / hidden_out: float [n][hidden]. Returns the top's code, or -1 if no weights are loaded.
TELLME_EXPORT int tellme_decoder_forward(const float *params, uint16_t *k_cache, uint16_t *v_cache,
                                         const float *hidden_in, float *hidden_out, unsigned n, unsigned pos) {
    if (g_weights.empty()) return -1;
    return tellme_top(g_weights.data(), params, k_cache, v_cache, hidden_in, hidden_out, n, pos);
}

// One ternary matrix of the loaded image through the decoder's on-chip TLMM path, for bit-exact
// checks: line_offset in AXI words, xq int8 [k], y = acc / (s_x * s_w) float [n].
TELLME_EXPORT int tellme_decoder_matvec(size_t line_offset, const int8_t *xq, float s_x, float s_w, float *y,
                                        unsigned k, unsigned n) {
    if (g_weights.empty()) return -1;
    tellme::tlmm_block<tellme::tlmm_config>(g_weights.data() + line_offset, xq, k, &s_x, s_w, y, n, k, n, 1);
    return 0;
}

}  // extern "C"
