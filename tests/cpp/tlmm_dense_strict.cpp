// Every entry point of the hls4ml plugin's kernels (nnet_tellme.h over tlmm_dense.h), instantiated for
// io_parallel and io_stream with float and fixed-point tensors, odd sizes, several ports and token lanes:
// tests/test_hls4ml_plugin.py compiles this with -Wall -Wextra -Werror.
#include "ap_fixed.h"
#include "nnet_tellme.h"
#include "nnet_types.h"

struct bitlinear_cfg : nnet::tlmm_bitlinear_config {
    static const unsigned n_in = 101;
    static const unsigned n_out = 19;
    static const unsigned n_tokens = 5;
    static const unsigned ports = 4;
    static const unsigned token_lanes = 2;
    static const unsigned max_wpr = 2;
    static const unsigned max_rows = 5;
    static const unsigned max_block = 2;
    static constexpr float weight_scale = 1.25f;
};

struct norm_cfg : nnet::tlmm_rms_norm_config {
    static const unsigned n_in = 47;
    static const unsigned n_tokens = 5;
    static constexpr float epsilon = 1e-5f;
};

typedef ap_fixed<16, 6> fixed_t;
typedef tellme::tlmm_dense_arrays<bitlinear_cfg> rom;

void bitlinear_parallel(const float x[5 * 101], float y[5 * 19], const bitlinear_cfg::weight_t w[rom::limbs]) {
    nnet::tlmm_bitlinear<float, float, bitlinear_cfg>(x, y, w);
}

void bitlinear_parallel_fixed(const fixed_t x[5 * 101], fixed_t y[5 * 19], const bitlinear_cfg::weight_t w[rom::limbs]) {
    nnet::tlmm_bitlinear<fixed_t, fixed_t, bitlinear_cfg>(x, y, w);
}

void bitlinear_stream(hls::stream<nnet::array<float, 101> > &x, hls::stream<nnet::array<fixed_t, 19> > &y,
                      const bitlinear_cfg::weight_t w[rom::limbs]) {
    nnet::tlmm_bitlinear<nnet::array<float, 101>, nnet::array<fixed_t, 19>, bitlinear_cfg>(x, y, w);
}

void norm_parallel(const fixed_t x[5 * 47], float y[5 * 47], const norm_cfg::weight_t w[47]) {
    nnet::tlmm_rms_norm<fixed_t, float, norm_cfg>(x, y, w);
}

void norm_stream(hls::stream<nnet::array<float, 47> > &x, hls::stream<nnet::array<float, 47> > &y,
                 const norm_cfg::weight_t w[47]) {
    nnet::tlmm_rms_norm<nnet::array<float, 47>, nnet::array<float, 47>, norm_cfg>(x, y, w);
}
