// Table-lookup ternary matmul (TLMM), TeLLMe style: a header-only template for Vitis HLS and g++.
//
// Math. Activations are int8, weights ternary. Along K, every G=3 activations form a group; the
// ternary weights of a group are one index idx = 9*(w0+1) + 3*(w1+1) + (w2+1) in [0, 26] (13 = all
// zero). Per token we build, for every group, the table of all 27 sums w0*a0 + w1*a1 + w2*a2
// ("full" table) or only the 14 entries idx 13..26 ("half" table: idx(-w) = 26 - idx(w), so
// entry(idx) = -entry(26 - idx) for idx < 13; this trades storage for a negation on every read).
// Each output row then sums table entries picked by its indices, Q*T lookups per cycle, into an
// int32 accumulator, and is dequantised in the same loop: y = float(acc) / (s_x * s_w).
//
// Weight layout in DDR ("lines"), produced by tellme.hls.layout.ddr_weights:
//   T indices (5 bits each, index t at bits 5t..5t+4, little-endian) form one index vector of
//   CONFIG_T::vector_bytes bytes; Q consecutive vectors of a row (vector c*Q + q in lane q) form one
//   line of CONFIG_T::line_words AXI words (lane q at byte q*vector_bytes, zero fill at the end);
//   lines are stored row by row: word address = (row * cycles + c) * line_words, where
//   cycles = ceil(ceil(K / (G*T)) / Q). Vectors past the end of a row hold the zero group (13).
//   One line feeds one cycle of the lookup loop: the loader puts lane q into weight bank q (URAM,
//   or BRAM on parts without it), so the lookup loop reads Q vectors per cycle from Q banks.
// Activations in DDR: int8, K bytes packed into AXI words (byte b of word w = activation w*B + b).
//
// Structure (so that a table can serve many rows now and many tokens later):
//   tlmm_load_activations -> tlmm_build_table       once per token
//   tlmm_load_weights -> tlmm_rows                   per tile of rows, table shared by all rows
//   tlmm_compute                                     a block of tokens: each weight tile loaded once
//   tlmm_layer / tlmm_block                          one token from DDR / a block of tokens on chip
// Tiles are loaded, then computed (no load/compute overlap yet).
// CONFIG_T is a struct of static constants: tlmm_defaults below, which a design's generated config.h
// derives from and overrides (as hls4ml's layer configs derive from their defaults).
#ifndef TELLME_TLMM_H
#define TELLME_TLMM_H

#include <stdint.h>

#include "ap_int.h"

// A pragma whose argument is a keyword cannot take a C++ constant, so the weight banks' memory type is
// the one macro: config.h defines TELLME_WEIGHT_STORAGE (uram or bram) from the design's parameters.
// Without config.h it is tlmm_defaults' choice, uram, stated here.
#define TELLME_PRAGMA_STRING(x) _Pragma(#x)
#define TELLME_PRAGMA(x) TELLME_PRAGMA_STRING(x)
#ifndef TELLME_WEIGHT_STORAGE
#define TELLME_WEIGHT_STORAGE uram
#endif

namespace tellme {

// Every TLMM parameter, at TeLLMe's KV260 choices (full table, T=28) with Q=8 and 128-bit AXI words,
// sized for K, N <= 4096. A design's tlmm_config derives from this and overrides what differs.
struct tlmm_defaults {
    static const unsigned G = 3;  // activations per group (the index format encodes 3)
    static const unsigned T = 28;  // indices per index vector
    static const unsigned Q = 8;  // index vectors (weight banks) read per cycle
    static const bool half_table = false;  // 27 entries per group; true: 14 entries + sign
    static const unsigned axi_width = 128;  // bits per m_axi beat
    static const unsigned vector_bytes = 18;  // one index vector in DDR: ceil(5T / 8)
    static const unsigned line_words = 9;  // AXI words per line of Q vectors: ceil(Q * 8 * vector_bytes / axi_width)
    static const unsigned max_k = 4096;
    static const unsigned max_n = 4096;
    static const unsigned max_cycles = 7;  // lines per row at max_k: ceil(ceil(max_k / (G*T)) / Q)
    static const unsigned wbuf_depth = 4096;  // index vectors per weight bank
    static const unsigned tile_rows = 585;  // rows per weight tile: wbuf_depth / max_cycles
    static const unsigned max_block = 1;  // tokens per prefill block
};

static const unsigned TLMM_INDEX_BITS = 5;
static const unsigned TLMM_ZERO_INDEX = 13;

template <class CONFIG_T> struct tlmm_types {
    static const unsigned entries = CONFIG_T::half_table ? 14 : 27;
    static const unsigned chunk = CONFIG_T::G * CONFIG_T::T;  // activations per index vector
    static const unsigned max_vectors = CONFIG_T::max_cycles * CONFIG_T::Q;
    static const unsigned vector_bits = CONFIG_T::T * TLMM_INDEX_BITS;
    static const unsigned axi_bytes = CONFIG_T::axi_width / 8;
    static const unsigned gear_bits = (chunk + axi_bytes) * 8;

    typedef ap_int<8> act_t;
    typedef ap_int<10> entry_t;  // |sum of 3 int8| <= 384
    typedef ap_int<32> acc_t;
    typedef ap_uint<vector_bits> ivec_t;
    typedef ap_uint<CONFIG_T::axi_width> word_t;
    typedef ap_uint<gear_bits> gear_t;

    static_assert(CONFIG_T::G == 3, "the index format encodes groups of 3 weights");
    static_assert(CONFIG_T::axi_width % 8 == 0, "AXI width must be whole bytes");
    static_assert(CONFIG_T::vector_bytes * 8 >= vector_bits, "an index vector must fit its slot");
    static_assert(CONFIG_T::line_words * CONFIG_T::axi_width >= CONFIG_T::Q * CONFIG_T::vector_bytes * 8,
                  "Q vectors must fit a line");
    static_assert(CONFIG_T::tile_rows * CONFIG_T::max_cycles <= CONFIG_T::wbuf_depth,
                  "a tile of rows must fit the weight buffer");
    static_assert(CONFIG_T::tile_rows >= 1, "the weight buffer must hold at least one row");
};

// Number of index vectors and of lookup cycles per row for a K.
template <class CONFIG_T> inline unsigned tlmm_cycles(unsigned k) {
    const unsigned chunk = tlmm_types<CONFIG_T>::chunk;
    const unsigned vectors = (k + chunk - 1) / chunk;
    return (vectors + CONFIG_T::Q - 1) / CONFIG_T::Q;
}

// One table entry: the sum of a group's activations weighted by the ternary digits of idx.
template <class CONFIG_T>
inline typename tlmm_types<CONFIG_T>::entry_t
tlmm_group_sum(unsigned idx, typename tlmm_types<CONFIG_T>::act_t a0,
               typename tlmm_types<CONFIG_T>::act_t a1, typename tlmm_types<CONFIG_T>::act_t a2) {
#pragma HLS INLINE
    typedef typename tlmm_types<CONFIG_T>::entry_t entry_t;
    const int d0 = int(idx / 9) - 1, d1 = int((idx / 3) % 3) - 1, d2 = int(idx % 3) - 1;
    entry_t sum = 0;
    sum += d0 > 0 ? entry_t(a0) : d0 < 0 ? entry_t(-a0) : entry_t(0);
    sum += d1 > 0 ? entry_t(a1) : d1 < 0 ? entry_t(-a1) : entry_t(0);
    sum += d2 > 0 ? entry_t(a2) : d2 < 0 ? entry_t(-a2) : entry_t(0);
    return sum;
}

// Read one activation vector after another out of AXI words (a byte gearbox), zero past k.
template <class CONFIG_T>
void tlmm_load_activations(const typename tlmm_types<CONFIG_T>::word_t *src, unsigned k,
                           unsigned n_vectors,
                           typename tlmm_types<CONFIG_T>::act_t xbuf[][tlmm_types<CONFIG_T>::chunk]) {
    typedef tlmm_types<CONFIG_T> ty;
    const unsigned n_words = (k + ty::axi_bytes - 1) / ty::axi_bytes;
    const unsigned n_steps = n_vectors + (n_vectors * ty::chunk + ty::axi_bytes - 1) / ty::axi_bytes;
    const unsigned max_steps = 2 * ty::max_vectors + ty::max_vectors * ty::chunk / ty::axi_bytes;
    typename ty::gear_t gear = 0;
    unsigned fill = 0, v = 0, w = 0;
LOAD_ACTS:
    for (unsigned step = 0; step < n_steps; step++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT max=max_steps
        if (fill >= ty::chunk) {
        EMIT:
            for (unsigned b = 0; b < ty::chunk; b++) {
#pragma HLS UNROLL
                const ap_uint<8> byte = gear.range(8 * b + 7, 8 * b);
                xbuf[v][b] = (v * ty::chunk + b < k) ? typename ty::act_t(byte) : typename ty::act_t(0);
            }
            gear >>= 8 * ty::chunk;
            fill -= ty::chunk;
            v++;
        } else {
            const typename ty::word_t word = w < n_words ? src[w] : typename ty::word_t(0);
            gear |= typename ty::gear_t(word) << (8 * fill);
            fill += ty::axi_bytes;
            w++;
        }
    }
}

// Build the lookup table of one token: vector v of the row goes to lane q = v % Q, slot c = v / Q,
// matching the weight bank that lane q reads in cycle c.
template <class CONFIG_T>
void tlmm_build_table(
    const typename tlmm_types<CONFIG_T>::act_t xbuf[][tlmm_types<CONFIG_T>::chunk], unsigned n_vectors,
    typename tlmm_types<CONFIG_T>::entry_t table[CONFIG_T::Q][CONFIG_T::T][CONFIG_T::max_cycles]
                                                [tlmm_types<CONFIG_T>::entries]) {
    typedef tlmm_types<CONFIG_T> ty;
    const unsigned first = CONFIG_T::half_table ? TLMM_ZERO_INDEX : 0;
    const unsigned max_vectors = ty::max_vectors;
    unsigned q = 0, c = 0;
BUILD_TABLE:
    for (unsigned v = 0; v < n_vectors; v++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT max=max_vectors
    GROUPS:
        for (unsigned t = 0; t < CONFIG_T::T; t++) {
#pragma HLS UNROLL
            const typename ty::act_t a0 = xbuf[v][3 * t], a1 = xbuf[v][3 * t + 1], a2 = xbuf[v][3 * t + 2];
        ENTRIES:
            for (unsigned e = 0; e < ty::entries; e++) {
#pragma HLS UNROLL
                table[q][t][c][e] = tlmm_group_sum<CONFIG_T>(first + e, a0, a1, a2);
            }
        }
        if (q == CONFIG_T::Q - 1) {
            q = 0;
            c++;
        } else {
            q++;
        }
    }
}

// One lookup: the table entry of a group for a 5-bit index, through the sign logic in half mode.
template <class CONFIG_T>
inline typename tlmm_types<CONFIG_T>::entry_t
tlmm_lookup(const typename tlmm_types<CONFIG_T>::entry_t row[tlmm_types<CONFIG_T>::entries],
            ap_uint<TLMM_INDEX_BITS> idx) {
#pragma HLS INLINE
    typedef typename tlmm_types<CONFIG_T>::entry_t entry_t;
    if (!CONFIG_T::half_table) return row[idx];
    const bool negate = idx < TLMM_ZERO_INDEX;
    const ap_uint<4> e = negate ? ap_uint<4>(TLMM_ZERO_INDEX - idx) : ap_uint<4>(idx - TLMM_ZERO_INDEX);
    const entry_t value = row[e];
    return negate ? entry_t(-value) : value;
}

// Split an index vector into its T indices. Pure wiring in hardware; done through pieces of at most
// 60 bits because ap_types' range() on multi-word integers is slow in C simulation.
template <class CONFIG_T>
inline void tlmm_split_vector(const typename tlmm_types<CONFIG_T>::ivec_t &vec,
                              ap_uint<TLMM_INDEX_BITS> idx[CONFIG_T::T]) {
#pragma HLS INLINE
    const unsigned per_piece = 12;
    const unsigned pieces = (CONFIG_T::T + per_piece - 1) / per_piece;
PIECES:
    for (unsigned p = 0; p < pieces; p++) {
#pragma HLS UNROLL
        const ap_uint<per_piece * TLMM_INDEX_BITS> piece = vec >> (p * per_piece * TLMM_INDEX_BITS);
    PIECE_INDICES:
        for (unsigned j = 0; j < per_piece && p * per_piece + j < CONFIG_T::T; j++) {
#pragma HLS UNROLL
            idx[p * per_piece + j] = piece.range(TLMM_INDEX_BITS * j + TLMM_INDEX_BITS - 1, TLMM_INDEX_BITS * j);
        }
    }
}

// Load a tile of rows: line l (Q vectors in line_words AXI words) becomes address l of the Q weight
// banks. Vector q is gathered from the (at most a few) words its bytes fall into.
template <class CONFIG_T>
void tlmm_load_weights(const typename tlmm_types<CONFIG_T>::word_t *src, unsigned first_line,
                       unsigned n_lines,
                       typename tlmm_types<CONFIG_T>::ivec_t wbuf[CONFIG_T::Q][CONFIG_T::wbuf_depth]) {
    typedef tlmm_types<CONFIG_T> ty;
    const unsigned AW = CONFIG_T::axi_width;
    const unsigned max_words = CONFIG_T::wbuf_depth * CONFIG_T::line_words;
    typename ty::word_t words[CONFIG_T::line_words];
#pragma HLS ARRAY_PARTITION variable=words complete
    unsigned j = 0, l = 0;
    const unsigned base = first_line * CONFIG_T::line_words;
LOAD_WEIGHTS:
    for (unsigned i = 0; i < n_lines * CONFIG_T::line_words; i++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT max=max_words
        words[j] = src[base + i];
        if (j == CONFIG_T::line_words - 1) {
        SPLIT:
            for (unsigned q = 0; q < CONFIG_T::Q; q++) {
#pragma HLS UNROLL
                const unsigned lo = q * CONFIG_T::vector_bytes * 8, hi = lo + ty::vector_bits - 1;
                typename ty::ivec_t vec = 0;
            GATHER:
                for (unsigned w = lo / AW; w <= hi / AW; w++) {
#pragma HLS UNROLL
                    const unsigned from = lo > w * AW ? lo : w * AW;
                    const unsigned to = hi < w * AW + AW - 1 ? hi : w * AW + AW - 1;
                    vec.range(to - lo, from - lo) = words[w].range(to - w * AW, from - w * AW);
                }
                wbuf[q][l] = vec;
            }
            l++;
            j = 0;
        } else {
            j++;
        }
    }
}

// Lookup and accumulate n_rows rows of n_cycles cycles each, Q*T lookups per cycle, and dequantise
// each finished row: y[r] = float(acc) / denom, with denom = s_x * s_w (float32, as numpy does).
template <class CONFIG_T>
void tlmm_rows(
    const typename tlmm_types<CONFIG_T>::entry_t table[CONFIG_T::Q][CONFIG_T::T][CONFIG_T::max_cycles]
                                                      [tlmm_types<CONFIG_T>::entries],
    const typename tlmm_types<CONFIG_T>::ivec_t wbuf[CONFIG_T::Q][CONFIG_T::wbuf_depth], unsigned n_rows,
    unsigned n_cycles, float denom, float y[]) {
    typedef tlmm_types<CONFIG_T> ty;
    const unsigned max_steps = CONFIG_T::tile_rows * CONFIG_T::max_cycles;
    typename ty::acc_t acc = 0;
    unsigned c = 0, r = 0;
ROWS:
    for (unsigned i = 0; i < n_rows * n_cycles; i++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT max=max_steps
        typename ty::acc_t part = 0;
    LANES:
        for (unsigned q = 0; q < CONFIG_T::Q; q++) {
#pragma HLS UNROLL
            ap_uint<TLMM_INDEX_BITS> idx[CONFIG_T::T];
#pragma HLS ARRAY_PARTITION variable=idx complete
            tlmm_split_vector<CONFIG_T>(wbuf[q][i], idx);
        INDICES:
            for (unsigned t = 0; t < CONFIG_T::T; t++) {
#pragma HLS UNROLL
                part += tlmm_lookup<CONFIG_T>(table[q][t][c], idx[t]);
            }
        }
        acc = (c == 0 ? typename ty::acc_t(0) : acc) + part;
        if (c == n_cycles - 1) {
            y[r] = static_cast<float>(acc.to_int()) / denom;
            r++;
            c = 0;
        } else {
            c++;
        }
    }
}

// The engine proper, for a block of b tokens whose activations are in xbuf[0..b): the weights stream
// through the banks once, a tile of rows at a time, and every tile serves every token of the block
// (the table of token t is rebuilt from xbuf[t] per tile, a few cycles against the tile's lookups).
// y[t * y_stride + r] = acc(t, r) / (s_x[t] * s_w).
template <class CONFIG_T>
void tlmm_compute(const typename tlmm_types<CONFIG_T>::act_t xbuf[][tlmm_types<CONFIG_T>::max_vectors]
                                                               [tlmm_types<CONFIG_T>::chunk],
                  unsigned b, const typename tlmm_types<CONFIG_T>::word_t *weights, const float *s_x, float s_w,
                  float *y, unsigned y_stride, unsigned k, unsigned n) {
    typedef tlmm_types<CONFIG_T> ty;
    static typename ty::entry_t table[CONFIG_T::Q][CONFIG_T::T][CONFIG_T::max_cycles][ty::entries];
#pragma HLS ARRAY_PARTITION variable=table complete dim=1
#pragma HLS ARRAY_PARTITION variable=table complete dim=2
#pragma HLS ARRAY_RESHAPE variable=table complete dim=4
#pragma HLS BIND_STORAGE variable=table type=ram_s2p impl=lutram
    static typename ty::ivec_t wbuf[CONFIG_T::Q][CONFIG_T::wbuf_depth];
#pragma HLS ARRAY_PARTITION variable=wbuf complete dim=1
    TELLME_PRAGMA(HLS BIND_STORAGE variable=wbuf type=ram_s2p impl=TELLME_WEIGHT_STORAGE)
    static float ybuf[CONFIG_T::tile_rows];

    const unsigned n_cycles = tlmm_cycles<CONFIG_T>(k);
    const unsigned n_vectors = n_cycles * CONFIG_T::Q;
    const unsigned max_tiles = (CONFIG_T::max_n + CONFIG_T::tile_rows - 1) / CONFIG_T::tile_rows;
    const unsigned max_rows = CONFIG_T::tile_rows;
    const unsigned max_block = CONFIG_T::max_block;
    if (b == 1) tlmm_build_table<CONFIG_T>(xbuf[0], n_vectors, table);  // decode: one table for all tiles
TILES:
    for (unsigned r0 = 0; r0 < n; r0 += CONFIG_T::tile_rows) {
#pragma HLS LOOP_TRIPCOUNT max=max_tiles
        const unsigned rows = (n - r0 < CONFIG_T::tile_rows) ? n - r0 : unsigned(CONFIG_T::tile_rows);
        tlmm_load_weights<CONFIG_T>(weights, r0 * n_cycles, rows * n_cycles, wbuf);
    BLOCK_TOKENS:
        for (unsigned t = 0; t < b; t++) {
#pragma HLS LOOP_TRIPCOUNT max=max_block
            if (b > 1) tlmm_build_table<CONFIG_T>(xbuf[t], n_vectors, table);
            tlmm_rows<CONFIG_T>(table, wbuf, rows, n_cycles, s_x[t] * s_w, ybuf);
        STORE:
            for (unsigned r = 0; r < rows; r++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT max=max_rows
                y[t * y_stride + r0 + r] = ybuf[r];
            }
        }
    }
}

// One layer for one token, activations read from DDR: y[n] = (x[k] . W[n, :]) / (s_x * s_w).
// Returns 0, or 1 when k or n is outside what the buffers were sized for (k in [1, max_k], n <= max_n).
template <class CONFIG_T>
int tlmm_layer(const typename tlmm_types<CONFIG_T>::word_t *weights,
               const typename tlmm_types<CONFIG_T>::word_t *x, float s_x, float s_w, float *y, unsigned k,
               unsigned n) {
    typedef tlmm_types<CONFIG_T> ty;
    if (k == 0 || k > CONFIG_T::max_k || n > CONFIG_T::max_n) return 1;
    static typename ty::act_t xbuf[1][ty::max_vectors][ty::chunk];
#pragma HLS ARRAY_PARTITION variable=xbuf complete dim=3
    tlmm_load_activations<CONFIG_T>(x, k, tlmm_cycles<CONFIG_T>(k) * CONFIG_T::Q, xbuf[0]);
    tlmm_compute<CONFIG_T>(xbuf, 1, weights, &s_x, s_w, y, n, k, n);
    return 0;
}

// One matrix for a block of b tokens with the int8 activations already on chip (the decoder's path):
// xq[t * x_stride + i], y[t * y_stride + r]. weights points at the matrix's first line. The caller
// guarantees 1 <= b <= max_block, k <= max_k and n <= max_n.
template <class CONFIG_T>
void tlmm_block(const typename tlmm_types<CONFIG_T>::word_t *weights, const int8_t *xq, unsigned x_stride,
                const float *s_x, float s_w, float *y, unsigned y_stride, unsigned k, unsigned n, unsigned b) {
    typedef tlmm_types<CONFIG_T> ty;
    static typename ty::act_t xbuf[CONFIG_T::max_block][ty::max_vectors][ty::chunk];
#pragma HLS ARRAY_PARTITION variable=xbuf complete dim=3
    const unsigned n_vectors = tlmm_cycles<CONFIG_T>(k) * CONFIG_T::Q;
    const unsigned max_vectors = ty::max_vectors;
SCATTER_TOKENS:
    for (unsigned t = 0; t < b; t++) {
    SCATTER:
        for (unsigned v = 0; v < n_vectors; v++) {
#pragma HLS PIPELINE II=1
#pragma HLS LOOP_TRIPCOUNT max=max_vectors
            for (unsigned c = 0; c < ty::chunk; c++) {
#pragma HLS UNROLL
                const unsigned i = v * ty::chunk + c;
                xbuf[t][v][c] = i < k ? typename ty::act_t(xq[t * x_stride + i]) : typename ty::act_t(0);
            }
        }
    }
    tlmm_compute<CONFIG_T>(xbuf, b, weights, s_x, s_w, y, y_stride, k, n);
}

} // namespace tellme

#endif
