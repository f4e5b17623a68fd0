// The fused element-wise unit of a decoder layer, one token at a time:
//   rmsnorm_quant   RMSNorm (float32) fused with per-token absmax int8 quantisation
//   residual_add    h += y (y already dequantised by the TLMM output stage)
//   gate_up         act(gate) * up with act = relu2 (square(relu)) or silu
//   rope            rotary embedding in transformers' rotate_half layout, tables read from DDR
// Numerics follow the numpy reference (tellme.models.reference): float32 everywhere, round half to
// even for the int8 quantisation (std::rint in the default rounding mode).
#ifndef TELLME_ELEMENTWISE_H
#define TELLME_ELEMENTWISE_H

#include <cmath>
#include <stdint.h>

namespace tellme {

static const float ACT_QMAX = 127.0f;
static const float ACT_SCALE_FLOOR = 1e-5f;

enum activation_t { ACT_RELU2 = 0, ACT_SILU = 1 };

// Every element-wise parameter; a design's elementwise_config derives from this and overrides what differs.
struct elementwise_defaults {
    static const unsigned max_dim = 4096;  // widest vector (loop trip counts)
    static const unsigned head_dim = 64;  // RoPE
};

// y = w * (x / sqrt(mean(x^2) + eps)). The mean is accumulated in double: closer to the exact value
// than any float32 summation order, so it stays within float rounding of the reference.
template <class CONFIG_T> void rmsnorm(const float *x, const float *weight, float eps, unsigned n, float *y) {
    const unsigned max_dim = CONFIG_T::max_dim;  // pragma value
    (void)max_dim;
    double sum_sq = 0.0;
sum_sq_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_dim
        sum_sq += (double)(x[i] * x[i]);
    }
    const float variance = (float)(sum_sq / n);
    const float inv_rms = 1.0f / std::sqrt(variance + eps);
norm_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_dim
        y[i] = weight[i] * (x[i] * inv_rms);
    }
}

// s = 127 / max|y| (floored at 1e-5) and yq = clamp(round(y * s), -128, 127), per token.
template <class CONFIG_T> void absmax_quant(const float *y, unsigned n, int8_t *yq, float &scale) {
    const unsigned max_dim = CONFIG_T::max_dim;  // pragma value
    (void)max_dim;
    float peak = 0.0f;
peak_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_dim
        const float a = std::fabs(y[i]);
        peak = a > peak ? a : peak;
    }
    scale = ACT_QMAX / (peak > ACT_SCALE_FLOOR ? peak : ACT_SCALE_FLOOR);
quant_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_dim
        float r = std::rint(y[i] * scale);
        r = r < -128.0f ? -128.0f : (r > 127.0f ? 127.0f : r);
        yq[i] = (int8_t)r;
    }
}

// The fused unit in front of every ternary matmul: RMSNorm, then int8 quantisation of its output.
template <class CONFIG_T>
void rmsnorm_quant(const float *x, const float *weight, float eps, unsigned n, float *y, int8_t *yq, float &scale) {
    rmsnorm<CONFIG_T>(x, weight, eps, n, y);
    absmax_quant<CONFIG_T>(y, n, yq, scale);
}

template <class CONFIG_T> void residual_add(float *h, const float *y, unsigned n) {
    const unsigned max_dim = CONFIG_T::max_dim;  // pragma value
    (void)max_dim;
residual_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_dim
        h[i] = h[i] + y[i];
    }
}

inline float activate(float g, int act) {
    if (act == ACT_RELU2) {
        const float r = g > 0.0f ? g : 0.0f;
        return r * r;
    }
    return g / (1.0f + std::exp(-g));
}

template <class CONFIG_T> void gate_up(const float *gate, const float *up, int act, unsigned n, float *m) {
    const unsigned max_dim = CONFIG_T::max_dim;  // pragma value
    (void)max_dim;
gate_up_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_dim
        m[i] = activate(gate[i], act) * up[i];
    }
}

// x[heads][HEAD_DIM] in place: x*cos + rotate_half(x)*sin, rotate_half(x) = (-x2, x1).
// cos_row/sin_row are one position's rows of the [max_context][HEAD_DIM] tables.
template <class CONFIG_T>
void rope(float *x, unsigned heads, const float *cos_row, const float *sin_row) {
    const unsigned HEAD_DIM = CONFIG_T::head_dim;
    const unsigned half = HEAD_DIM / 2;
    const unsigned max_heads = CONFIG_T::max_dim / HEAD_DIM;  // pragma value
    (void)max_heads;
rope_heads:
    for (unsigned h = 0; h < heads; h++) {
#pragma HLS LOOP_TRIPCOUNT max = max_heads
    rope_pairs:
        for (unsigned i = 0; i < half; i++) {
#pragma HLS PIPELINE II = 1
            const float x1 = x[h * HEAD_DIM + i];
            const float x2 = x[h * HEAD_DIM + half + i];
            x[h * HEAD_DIM + i] = x1 * cos_row[i] + (-x2) * sin_row[i];
            x[h * HEAD_DIM + half + i] = x2 * cos_row[half + i] + x1 * sin_row[half + i];
        }
    }
}

}  // namespace tellme

#endif
