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

// y = w * (x / sqrt(mean(x^2) + eps)). The mean is accumulated in double: closer to the exact value
// than any float32 summation order, so it stays within float rounding of the reference.
template <unsigned DIM> void rmsnorm(const float x[DIM], const float weight[DIM], float eps, unsigned n, float y[DIM]) {
    double sum_sq = 0.0;
sum_sq_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
        sum_sq += (double)(x[i] * x[i]);
    }
    const float variance = (float)(sum_sq / n);
    const float inv_rms = 1.0f / std::sqrt(variance + eps);
norm_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
        y[i] = weight[i] * (x[i] * inv_rms);
    }
}

// s = 127 / max|y| (floored at 1e-5) and yq = clamp(round(y * s), -128, 127), per token.
template <unsigned DIM> void absmax_quant(const float y[DIM], unsigned n, int8_t yq[DIM], float &scale) {
    float peak = 0.0f;
peak_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
        const float a = std::fabs(y[i]);
        peak = a > peak ? a : peak;
    }
    scale = ACT_QMAX / (peak > ACT_SCALE_FLOOR ? peak : ACT_SCALE_FLOOR);
quant_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
        float r = std::rint(y[i] * scale);
        r = r < -128.0f ? -128.0f : (r > 127.0f ? 127.0f : r);
        yq[i] = (int8_t)r;
    }
}

// The fused unit in front of every ternary matmul: RMSNorm, then int8 quantisation of its output.
template <unsigned DIM>
void rmsnorm_quant(const float x[DIM], const float weight[DIM], float eps, unsigned n, float y[DIM],
                   int8_t yq[DIM], float &scale) {
    rmsnorm<DIM>(x, weight, eps, n, y);
    absmax_quant<DIM>(y, n, yq, scale);
}

template <unsigned DIM> void residual_add(float h[DIM], const float y[DIM], unsigned n) {
residual_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
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

template <unsigned DIM> void gate_up(const float gate[DIM], const float up[DIM], int act, unsigned n, float m[DIM]) {
gate_up_loop:
    for (unsigned i = 0; i < n; i++) {
#pragma HLS PIPELINE II = 1
        m[i] = activate(gate[i], act) * up[i];
    }
}

// x[heads][HEAD_DIM] in place: x*cos + rotate_half(x)*sin, rotate_half(x) = (-x2, x1).
// cos_row/sin_row are one position's rows of the [max_context][HEAD_DIM] tables.
template <unsigned HEAD_DIM>
void rope(float *x, unsigned heads, const float cos_row[HEAD_DIM], const float sin_row[HEAD_DIM]) {
    const unsigned half = HEAD_DIM / 2;
rope_heads:
    for (unsigned h = 0; h < heads; h++) {
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
