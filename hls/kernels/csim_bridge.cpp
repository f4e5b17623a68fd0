// C-simulation bridge: plain C entry points around the HLS tops, for tellme.hls.csim (ctypes).
// Compiled with the project's src/ into a shared library; never part of the synthesised design.
// The library is built with -fvisibility=hidden so that several designs (whose template instances
// and static buffers share mangled names) can be loaded into one process: only these are exported.
// The TLMM engine's entry points are always there; the decoder's when the design has one (TELLME_DECODER).
#include <cstdio>
#include <vector>

#include "config.h"
#include "tb_io.h"

#define TELLME_EXPORT __attribute__((visibility("default")))

typedef tellme::tlmm_config TLMM;
typedef tellme::tlmm_types<TLMM> tlmm_ty;

extern "C" {

// The constants this library was compiled with, "key=value" separated by spaces; returns the length.
TELLME_EXPORT int tellme_csim_describe(char *out, unsigned size) {
    int used = std::snprintf(out, size,
                             "top=%s G=%u T=%u Q=%u half_table=%d axi_width=%u vector_bytes=%u line_words=%u "
                             "max_k=%u max_n=%u max_cycles=%u wbuf_depth=%u tile_rows=%u max_block=%u",
                             TELLME_TOP_NAME, TLMM::G, TLMM::T, TLMM::Q, int(TLMM::half_table), TLMM::axi_width,
                             TLMM::vector_bytes, TLMM::line_words, TLMM::max_k, TLMM::max_n, TLMM::max_cycles,
                             TLMM::wbuf_depth, TLMM::tile_rows, TLMM::max_block);
#ifdef TELLME_DECODER
    typedef tellme::model_config M;
    if (used > 0 && unsigned(used) < size)
        used += std::snprintf(out + used, size - used,
                              " hidden=%u intermediate=%u layers=%u heads=%u kv_heads=%u head_dim=%u "
                              "max_context=%u act=%d eps=%.9g w_layer_stride=%u p_layer_stride=%u p_rope_cos=%u "
                              "attention_pes=%u",
                              M::hidden, M::intermediate, M::layers, M::heads, M::kv_heads, M::head_dim,
                              M::max_context, M::act, double(M::eps), M::w_layer_stride, M::p_layer_stride,
                              M::p_rope_cos, M::attention::pes);
#endif
    return used;
}

// m tokens through one layer: weights in the DDR line layout (weight_bytes bytes), xq int8 [m, k],
// s_x float [m], y float [m, n]. Returns 0, 1 if the top refused k or n, 2 on a bad weight size.
TELLME_EXPORT int tellme_csim_tlmm(const uint8_t *weights, size_t weight_bytes, const int8_t *xq,
                                   const float *s_x, float s_w, float *y, unsigned m, unsigned k,
                                   unsigned n) {
    const size_t line_bytes = size_t(TLMM::line_words) * TLMM::axi_width / 8;
    if (k == 0 || weight_bytes != size_t(n) * tellme::tlmm_cycles<TLMM>(k) * line_bytes) return 2;
    const std::vector<tlmm_ty::word_t> words = tellme_tb::to_words<TLMM::axi_width>(weights, weight_bytes);
    for (unsigned i = 0; i < m; i++) {
        const std::vector<tlmm_ty::word_t> acts = tellme_tb::to_words<TLMM::axi_width>(
            reinterpret_cast<const uint8_t *>(xq + size_t(i) * k), k);
        const int rc = tellme_tlmm_top(words.data(), acts.data(), s_x[i], s_w, y + size_t(i) * n, k, n);
        if (rc) return rc;
    }
    return 0;
}

#ifdef TELLME_DECODER
// The weights image, as AXI words: loaded once, like the upload to the board's DDR.
static std::vector<tellme::axi_word_t> g_weights;

TELLME_EXPORT void tellme_decoder_load_weights(const uint8_t *weights, size_t weight_bytes) {
    g_weights = tellme_tb::to_words<TLMM::axi_width>(weights, weight_bytes);
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
    tellme::tlmm_block<TLMM>(g_weights.data() + line_offset, xq, k, &s_x, s_w, y, n, k, n, 1);
    return 0;
}
#endif

}  // extern "C"
