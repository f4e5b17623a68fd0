// C-simulation bridge: plain C entry points around the HLS top, for tellme.hls.csim (ctypes).
// Compiled with the project's src/ into a shared library; never part of the synthesised design.
// The library is built with -fvisibility=hidden so that several designs (whose template instances
// and static buffers share mangled names) can be loaded into one process: only these are exported.
#include <cstdio>

#include "config.h"
#include "tb_io.h"

#define TELLME_EXPORT __attribute__((visibility("default")))

typedef tellme::tlmm_types<tellme::tlmm_config> tlmm_ty;

extern "C" {

// The constants this library was compiled with, "key=value" separated by spaces; returns the length.
TELLME_EXPORT int tellme_csim_describe(char *out, unsigned size) {
    typedef tellme::tlmm_config C;
    return std::snprintf(out, size,
                         "top=%s G=%u T=%u Q=%u half_table=%d axi_width=%u vector_bytes=%u line_words=%u "
                         "max_k=%u max_n=%u max_cycles=%u wbuf_depth=%u tile_rows=%u",
                         TELLME_TOP_NAME, C::G, C::T, C::Q, int(C::half_table), C::axi_width,
                         C::vector_bytes, C::line_words, C::max_k, C::max_n, C::max_cycles, C::wbuf_depth,
                         C::tile_rows);
}

// m tokens through one layer: weights in the DDR line layout (weight_bytes bytes), xq int8 [m, k],
// s_x float [m], y float [m, n]. Returns 0, 1 if the top refused k or n, 2 on a bad weight size.
TELLME_EXPORT int tellme_csim_tlmm(const uint8_t *weights, size_t weight_bytes, const int8_t *xq,
                                   const float *s_x, float s_w, float *y, unsigned m, unsigned k,
                                   unsigned n) {
    const size_t line_bytes = size_t(tellme::tlmm_config::line_words) * tellme::tlmm_config::axi_width / 8;
    if (k == 0 || weight_bytes != size_t(n) * tellme::tlmm_cycles<tellme::tlmm_config>(k) * line_bytes)
        return 2;
    const std::vector<tlmm_ty::word_t> words =
        tellme_tb::to_words<tellme::tlmm_config::axi_width>(weights, weight_bytes);
    for (unsigned i = 0; i < m; i++) {
        const std::vector<tlmm_ty::word_t> acts = tellme_tb::to_words<tellme::tlmm_config::axi_width>(
            reinterpret_cast<const uint8_t *>(xq + size_t(i) * k), k);
        const int rc = tellme_tlmm_top(words.data(), acts.data(), s_x[i], s_w, y + size_t(i) * n, k, n);
        if (rc) return rc;
    }
    return 0;
}

} // extern "C"
