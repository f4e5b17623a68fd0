// hls4ml's entry points for the tellme plugin's layers, in hls4ml's calling convention (namespace nnet,
// <input type, result type, config>): the same function for io_parallel (flat token-major arrays) and
// io_stream (one stream element per token), around the on-chip kernels of tlmm_dense.h.
#ifndef NNET_TELLME_H_
#define NNET_TELLME_H_

#include "hls_stream.h"
#include "nnet_common.h"
#include "tlmm_dense.h"

namespace nnet {

// A BitLinear layer's config derives from this (hls4ml's config template states every value).
struct tlmm_bitlinear_config : tellme::tlmm_dense_defaults {
    static const unsigned io_type = io_parallel;
    typedef ap_uint<32> weight_t;  // 32-bit limbs of the 128-bit index words
};

// An RMSNorm layer's config derives from this.
struct tlmm_rms_norm_config : tellme::rms_norm_defaults {
    static const unsigned io_type = io_parallel;
    typedef ap_uint<32> weight_t;  // IEEE float bits of the norm weights
};

// Token tok's N values as float into row[0] (V values a cycle).
template <unsigned N, unsigned V, class data_T>
void tellme_read_token(const data_T x[], unsigned tok, float row[1][N]) {
READ_TOKEN:
    for (unsigned i = 0; i < (N + V - 1) / V; i++) {
#pragma HLS PIPELINE II = 1
        for (unsigned v = 0; v < V; v++) {
#pragma HLS UNROLL
            const unsigned idx = i * V + v;
            if (idx < N) row[0][idx] = float(x[tok * N + idx]);
        }
    }
}

template <unsigned N, unsigned V, class data_T>
void tellme_read_token(hls::stream<data_T> &x, unsigned, float row[1][N]) {
    static_assert(data_T::size == N, "one stream element per token");
    const data_T in = x.read();
READ_ELEMENT:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS UNROLL
        row[0][i] = float(in[i]);
    }
}

// Row `lane` of out (its first N values) as token tok of the output (V values a cycle).
template <unsigned N, unsigned LANES, unsigned ROWS, unsigned V, class res_T>
void tellme_write_token(res_T y[], unsigned tok, const float out[LANES][ROWS], unsigned lane) {
WRITE_TOKEN:
    for (unsigned i = 0; i < (N + V - 1) / V; i++) {
#pragma HLS PIPELINE II = 1
        for (unsigned v = 0; v < V; v++) {
#pragma HLS UNROLL
            const unsigned idx = i * V + v;
            if (idx < N) y[tok * N + idx] = res_T(out[lane][idx]);
        }
    }
}

template <unsigned N, unsigned LANES, unsigned ROWS, unsigned V, class res_T>
void tellme_write_token(hls::stream<res_T> &y, unsigned, const float out[LANES][ROWS], unsigned lane) {
    static_assert(res_T::size == N, "one stream element per token");
    res_T pack;
PACK_ELEMENT:
    for (unsigned i = 0; i < N; i++) {
#pragma HLS UNROLL
        pack[i] = typename res_T::value_type(out[lane][i]);
    }
    y.write(pack);
}

// IN / OUT: pointers to the io_parallel arrays, or references to the io_stream streams.
template <class IN, class OUT, typename CONFIG_T>
void tlmm_bitlinear_tokens(IN x, OUT y,
                           const typename CONFIG_T::weight_t w[tellme::tlmm_dense_arrays<CONFIG_T>::limbs]) {
    typedef tellme::tlmm_arrays<CONFIG_T> TA;
    typedef tellme::tlmm_dense_arrays<CONFIG_T> DA;
    const unsigned P = CONFIG_T::ports, TP = CONFIG_T::token_lanes, V = CONFIG_T::lanes, N_IN = CONFIG_T::n_in;
    const unsigned ROM_WORD = P * tellme::LIMBS_PER_WORD;  // limbs read each cycle
    const unsigned groups = (CONFIG_T::n_tokens + TP - 1) / TP;
    (void)ROM_WORD;  // used by the pragma only
#pragma HLS ARRAY_RESHAPE variable = w cyclic factor = ROM_WORD
    typename TA::table_t table;
#pragma HLS ARRAY_PARTITION variable = table complete dim = 1
#pragma HLS ARRAY_PARTITION variable = table complete dim = 2
#pragma HLS ARRAY_RESHAPE variable = table complete dim = 4
#pragma HLS BIND_STORAGE variable = table type = ram_s2p impl = lutram
    typename TA::xq_t xq;
#pragma HLS ARRAY_PARTITION variable = xq cyclic factor = 5 dim = 2
#pragma HLS ARRAY_PARTITION variable = xq complete dim = 3
    float s_x[CONFIG_T::max_block];
#pragma HLS ARRAY_PARTITION variable = s_x complete
    float row[1][N_IN];
#pragma HLS ARRAY_PARTITION variable = row cyclic factor = V dim = 2
    typename DA::out_t out;
#pragma HLS ARRAY_PARTITION variable = out complete dim = 1
#pragma HLS ARRAY_PARTITION variable = out cyclic factor = P dim = 2
TOKEN_GROUPS:
    for (unsigned g = 0; g < groups; g++) {
        const unsigned t0 = g * TP;
        const unsigned active = CONFIG_T::n_tokens - t0 < TP ? CONFIG_T::n_tokens - t0 : TP;
    QUANTIZE_TOKENS:
        for (unsigned tl = 0; tl < active; tl++) {
#pragma HLS LOOP_TRIPCOUNT max = TP
            tellme_read_token<N_IN, V>(x, t0 + tl, row);
            s_x[tl] = tellme::tlmm_dense_quantize<CONFIG_T>(row, tl, xq);
        }
        tellme::tlmm_dense_group<CONFIG_T, typename CONFIG_T::weight_t>(xq, s_x, active, w, table, out);
    WRITE_TOKENS:
        for (unsigned tl = 0; tl < active; tl++) {
#pragma HLS LOOP_TRIPCOUNT max = TP
            tellme_write_token<CONFIG_T::n_out, TP, DA::rows, P>(y, t0 + tl, out, tl);
        }
    }
}

// BitLinear, io_parallel: x[n_tokens * n_in] -> y[n_tokens * n_out], token-major.
template <class data_T, class res_T, typename CONFIG_T>
void tlmm_bitlinear(const data_T x[CONFIG_T::n_tokens * CONFIG_T::n_in], res_T y[CONFIG_T::n_tokens * CONFIG_T::n_out],
                    const typename CONFIG_T::weight_t w[tellme::tlmm_dense_arrays<CONFIG_T>::limbs]) {
    tlmm_bitlinear_tokens<const data_T *, res_T *, CONFIG_T>(x, y, w);
}

// BitLinear, io_stream: one element of n_in values per token in, one of n_out per token out.
template <class data_T, class res_T, typename CONFIG_T>
void tlmm_bitlinear(hls::stream<data_T> &x, hls::stream<res_T> &y,
                    const typename CONFIG_T::weight_t w[tellme::tlmm_dense_arrays<CONFIG_T>::limbs]) {
    tlmm_bitlinear_tokens<hls::stream<data_T> &, hls::stream<res_T> &, CONFIG_T>(x, y, w);
}

template <class IN, class OUT, typename CONFIG_T>
void tlmm_rms_norm_tokens(IN x, OUT y, const typename CONFIG_T::weight_t w[CONFIG_T::n_in]) {
    const unsigned V = CONFIG_T::lanes, N = CONFIG_T::n_in;
#pragma HLS ARRAY_PARTITION variable = w cyclic factor = V
    float row[1][N], out[1][N];
#pragma HLS ARRAY_PARTITION variable = row cyclic factor = V dim = 2
#pragma HLS ARRAY_PARTITION variable = out cyclic factor = V dim = 2
TOKENS:
    for (unsigned t = 0; t < CONFIG_T::n_tokens; t++) {
        tellme_read_token<N, V>(x, t, row);
        tellme::rms_norm_token<CONFIG_T, typename CONFIG_T::weight_t>(row, w, out);
        tellme_write_token<N, 1, N, V>(y, t, out, 0);
    }
}

// RMSNorm over the last dimension, io_parallel.
template <class data_T, class res_T, typename CONFIG_T>
void tlmm_rms_norm(const data_T x[CONFIG_T::n_tokens * CONFIG_T::n_in], res_T y[CONFIG_T::n_tokens * CONFIG_T::n_in],
                   const typename CONFIG_T::weight_t w[CONFIG_T::n_in]) {
    tlmm_rms_norm_tokens<const data_T *, res_T *, CONFIG_T>(x, y, w);
}

// RMSNorm over the last dimension, io_stream.
template <class data_T, class res_T, typename CONFIG_T>
void tlmm_rms_norm(hls::stream<data_T> &x, hls::stream<res_T> &y, const typename CONFIG_T::weight_t w[CONFIG_T::n_in]) {
    tlmm_rms_norm_tokens<hls::stream<data_T> &, hls::stream<res_T> &, CONFIG_T>(x, y, w);
}

}  // namespace nnet

#endif
