// C-simulation bridge: plain C entry points around the HLS top, for tellme.hls.csim (ctypes). Compiled
// with the project's src/ into a shared library; never part of the synthesised design. Built with
// -fvisibility=hidden so that several designs (whose template instances and static buffers share mangled
// names) can be loaded into one process: only these are exported.
//
// The library holds the board's static buffers (the weight stripes and params, uploaded once, like the
// board's DDR); a call passes the K/V cache, the embeddings in and the results out.
#include <cstdio>
#include <string>
#include <vector>

#include "config.h"
#include "tb_io.h"

#define TELLME_EXPORT __attribute__((visibility("default")))

typedef tellme::model_config M;
typedef tellme::tlmm_config TL;
typedef tellme::word_t word_t;

static std::vector<word_t> g_stripes[M::ports];
static std::vector<word_t> g_params, g_kv, g_hidden_in, g_results;

static const word_t *stripe(unsigned p) { return g_stripes[p < M::ports ? p : 0].data(); }

// Raw outputs of one matrix, for the bit-exact tests of the TLMM engine.
struct raw_buffers {
    float y[TL::max_block][TL::max_rows * TL::ports];
};
struct raw_sink {
    void put(raw_buffers &bf, unsigned tok, unsigned row, tellme::acc_t acc, float s_x) {
        bf.y[tok][row] = float(int(acc)) / s_x;
    }
    void finish(raw_buffers &) {}
};

extern "C" {

// The constants this library was compiled with, "key=value" separated by spaces; returns the length.
TELLME_EXPORT int tellme_csim_describe(char *out, unsigned size) {
    return std::snprintf(
        out, size,
        "ports=%u token_lanes=%u max_block=%u max_wpr=%u tile_words=%u hidden=%u intermediate=%u layers=%u "
        "heads=%u kv_heads=%u head_dim=%u head_dim_pad=%u max_context=%u act=%u eps=%.9g layer_words=%u "
        "kv_row_words=%u kv_block=%u attention_lanes=%u lm_head=%d vocab=%u fast_csim=%d profile=%d",
        M::ports, TL::token_lanes, TL::max_block, TL::max_wpr, TL::tile_words, M::hidden, M::intermediate,
        M::layers, M::heads, M::kv_heads, M::head_dim, M::head_dim_pad, M::max_context, M::act, double(M::eps),
        M::layer_words, M::kv_row_words, M::kv_block, M::attention::lanes, int(M::lm_head), M::vocab,
#ifdef TELLME_FAST_CSIM
        1,
#else
        0,
#endif
#ifdef TELLME_PROFILE
        1
#else
        0
#endif
    );
}

// The static buffers, as the host uploads them once: stripe p, and the params.
TELLME_EXPORT void tellme_csim_load_stripe(unsigned p, const void *bytes, size_t n_bytes) {
    if (p < M::ports) tellme_tb::bytes_to_words(bytes, n_bytes, g_stripes[p]);
}

TELLME_EXPORT void tellme_csim_load_params(const void *bytes, size_t n_bytes) {
    tellme_tb::bytes_to_words(bytes, n_bytes, g_params);
}

// n tokens at positions [pos, pos + n): kv (the K/V cache, updated in place), hidden_in (the n tokens'
// embeddings, rows of hidden_pad floats), results (hidden states or logits, written). Sizes in bytes.
// Returns the top's code, or -1 if no weights are loaded.
TELLME_EXPORT int tellme_csim_forward(void *kv, size_t kv_bytes, const void *hidden_in, size_t hidden_bytes,
                                      void *results, size_t results_bytes, unsigned n, unsigned pos) {
    if (g_stripes[0].empty() || g_params.empty()) return -1;
    tellme_tb::bytes_to_words(kv, kv_bytes, g_kv);
    tellme_tb::bytes_to_words(hidden_in, hidden_bytes, g_hidden_in);
    g_results.assign(results_bytes / 16, word_t(0));
    const word_t *stripes[8];
    for (unsigned p = 0; p < 8; p++) stripes[p] = stripe(p);
    const int rc = tellme_top_call(stripes, g_kv.data(), g_params.data(), g_hidden_in.data(), g_results.data(), n, pos);
    tellme_tb::words_to_bytes(g_kv, kv);
    tellme_tb::words_to_bytes(g_results, results);
    return rc;
}

// One matrix through the TLMM engine alone: P stripes of `rows` row-steps of wpr words (bytes: stripe
// after stripe), b tokens' int8 activations xq [b][wpr * 75] and scales s_x [b]; y [b][rows * P] gets
// acc / s_x. Returns 0, or 1 if the matrix or block exceeds what the design's buffers hold.
TELLME_EXPORT int tellme_csim_matrix(const void *bytes, unsigned rows, unsigned wpr, unsigned b, const int8_t *xq,
                                     const float *s_x, float *y) {
    typedef tellme::tlmm_arrays<TL> TA;
    if (rows == 0 || rows > TL::max_rows || wpr == 0 || wpr > TL::max_wpr || b == 0 || b > TL::max_block) return 1;
    static typename TA::table_t table;
    static typename TA::tile_t tile;
    static typename TA::xq_t xqa;
    static raw_buffers out;
    static float scales[TL::max_block];
    const unsigned groups = wpr * tellme::WORD_INDICES;
    for (unsigned t = 0; t < b; t++) {
        scales[t] = s_x[t];
        for (unsigned g = 0; g < groups; g++)
            for (unsigned k = 0; k < 3; k++) xqa[t][g / 5][g % 5][k] = xq[(size_t(t) * groups + g) * 3 + k];
    }
    tellme::word_stream streams[TL::ports];
    std::vector<word_t> words;
    tellme_tb::bytes_to_words(bytes, size_t(TL::ports) * rows * wpr * 16, words);
    for (unsigned p = 0; p < TL::ports; p++)
        for (unsigned i = 0; i < rows * wpr; i++) streams[p].write(words[size_t(p) * rows * wpr + i]);
    raw_sink sink;
    tellme::tlmm_matrix<TL, raw_sink, raw_buffers>(streams, rows, wpr, xqa, scales, b, table, tile, sink, out);
    for (unsigned t = 0; t < b; t++)
        for (unsigned r = 0; r < rows * TL::ports; r++) y[size_t(t) * rows * TL::ports + r] = out.y[t][r];
    return 0;
}

// The loop counters of a profiling build ("label=count" separated by spaces), and their reset.
TELLME_EXPORT int tellme_csim_profile(char *out, unsigned size) {
#ifdef TELLME_PROFILE
    std::string text;
    for (const auto &item : tellme::profile::counters()) text += item.first + "=" + std::to_string(item.second) + " ";
    return std::snprintf(out, size, "%s", text.c_str());
#else
    return size ? (out[0] = '\0', 0) : 0;
#endif
}

TELLME_EXPORT void tellme_csim_profile_reset() {
#ifdef TELLME_PROFILE
    for (auto &item : tellme::profile::counters()) item.second = 0;
#endif
}

}  // extern "C"
