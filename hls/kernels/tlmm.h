// Table-lookup ternary matmul (TLMM), TeLLMe style: a header-only template for Vitis HLS and g++.
//
// Math. Activations are int8, weights ternary. Along K, every 3 activations form a group; the ternary
// weights of a group are one index idx = 9*(w0+1) + 3*(w1+1) + (w2+1) in [0, 26] (13 = all zero). Per
// token a table holds, for every group, the sums w0*a0 + w1*a1 + w2*a2 an index can pick; an output
// row sums the entries its indices pick, into an int32 accumulator, and is dequantised as it
// finishes: y = float(acc) / (s_x * s_w), float32 as numpy computes it.
//
// Tables. The full table keeps all 27 sums (TeLLMe's); the half table keeps the 14 sums of indices
// 13..26 and reads index idx < 13 as the negated sum of 26 - idx (negating every weight of a group
// negates its sum), which halves the table and its 27-to-1 multiplexers for one negation a lookup.
//
// Weights arrive as 128-bit index words of 25 indices (index j at bits 5j..5j+4) on P stripes, one per
// weight port: stripe p carries rows p, p + P, p + 2P, ... (tellme.models.ddr_image). The engine
// consumes one word from every stripe per cycle, so P rows advance side by side ("a row-step"); each
// word's 25 indices read 25 table banks (bank j holds groups j, j + 25, ...), and each bank read
// serves all P rows. With TP token lanes, TP tokens' tables are looked up with the same words.
//
// Prefill. A block of b tokens reuses every weight word b times: the matrix goes through in tiles; the
// first token group takes the tile from the stripes and stores it in the tile buffer (URAM), the other
// groups replay it from there, each after rebuilding the tables for its tokens. Decode is the block of
// one: no tile is stored and the tables are built once per matrix.
//
// Structure:
//   tlmm_build_table   one token's tables, 5 groups per cycle
//   tlmm_rows          the lookup loop: P x TP x 25 lookups per cycle, dequantisation fused
//   tlmm_matrix        tiles and token groups of one matrix; its one call site serves every matrix
#ifndef TELLME_TLMM_H
#define TELLME_TLMM_H

#include "common.h"

namespace tellme {

// Every TLMM parameter, at the KV260 preset (six weight ports, two token lanes) for a 0.73B-sized
// model (K <= 4096). A design's tlmm_config derives from this and overrides what differs.
struct tlmm_defaults {
    static const unsigned ports = 6;  // P: weight stripes = rows looked up side by side
    static const unsigned token_lanes = 2;  // TP: tokens looked up per weight word (prefill)
    static const unsigned max_block = 16;  // B: tokens per prefill block
    static const unsigned max_wpr = 55;  // index words per row at max_k: ceil(ceil(max_k / 3) / 25)
    static const unsigned max_rows = 1366;  // rows per stripe of the tallest matrix (loop trip counts)
    static const unsigned tile_words = 4096;  // tile buffer depth per stripe
    static const unsigned max_tiles = 1;  // tiles of the tallest matrix (loop trip counts)
    static const unsigned max_rows_iters = 16384;  // iterations of one tlmm_rows call at most (trip counts)
    static const bool half_table = true;  // 14-entry tables (see above), or the full 27
};

static const unsigned BUILD_GROUPS = 5;  // table groups built per cycle
static const unsigned GROUPS_PER_SET = 5;  // activations are kept in sets of five groups (15 values)
static const unsigned BUILD_STEPS = WORD_INDICES / BUILD_GROUPS;  // cycles per word column

static const unsigned HALF_ENTRIES = TABLE_ENTRIES - ZERO_INDEX;  // 14: indices 13 .. 26

template <class C> struct tlmm_arrays {
    static const unsigned max_groups = C::max_wpr * WORD_INDICES;
    static const unsigned entries = C::half_table ? HALF_ENTRIES : TABLE_ENTRIES;
    typedef entry_t table_t[C::token_lanes][WORD_INDICES][C::max_wpr][entries];
    typedef entry_t row_t[entries];  // one bank's entries for one group
    typedef int8_t xq_t[C::max_block][max_groups / GROUPS_PER_SET][GROUPS_PER_SET][3];  // groups in sets of 5
    typedef word_t tile_t[C::ports][C::tile_words];
};

// One table entry: the sum of a group's activations weighted by the ternary digits of idx.
inline entry_t tlmm_entry(unsigned idx, int a0, int a1, int a2) {
#pragma HLS INLINE
    const int d0 = int(idx / 9) - 1, d1 = int((idx / 3) % 3) - 1, d2 = int(idx % 3) - 1;
    return entry_t(d0 * a0 + d1 * a1 + d2 * a2);
}

// The entries of one group into bank `bank`, word column c, of token lane tl.
template <class C>
inline void tlmm_store_group(typename tlmm_arrays<C>::table_t table, unsigned tl, unsigned bank, unsigned c, int a0,
                             int a1, int a2) {
#pragma HLS INLINE
    const unsigned first = C::half_table ? ZERO_INDEX : 0u;
ENTRIES:
    for (unsigned e = 0; e < tlmm_arrays<C>::entries; e++) {
#pragma HLS UNROLL
        table[tl][bank][c][e] = tlmm_entry(first + e, a0, a1, a2);
    }
}

// The entry index idx picks from one bank's entries (read once, shared by every row looking it up).
// ROW: the entries copied into registers (synthesis), or a pointer to them (the fast C simulation).
template <class C, class ROW> inline entry_t tlmm_pick(const ROW &row, unsigned idx) {
#pragma HLS INLINE
    if (!C::half_table) return row[idx];
    const int d = int(idx) - int(ZERO_INDEX), sign = d < 0 ? -1 : 0;  // sign: all ones below the zero index
    const int e = row[(d ^ sign) - sign];  // |idx - 13|
    return entry_t((e ^ sign) - sign);  // negated below the zero index
}

// One bank's entries at word column c: a single read of the bank (its entries are one reshaped word).
template <class C>
inline void tlmm_bank_row(const typename tlmm_arrays<C>::table_t table, unsigned tl, unsigned bank, unsigned c,
                          typename tlmm_arrays<C>::row_t row) {
#pragma HLS INLINE
    for (unsigned e = 0; e < tlmm_arrays<C>::entries; e++) {
#pragma HLS UNROLL
        row[e] = table[tl][bank][c][e];
    }
}

// Token `tok`'s tables into token lane tl: word column c, groups 25c .. 25c+24, five per cycle. The
// switch gives each case constant bank numbers, so the five writes of a cycle go to five known banks.
template <class C>
void tlmm_build_table(const typename tlmm_arrays<C>::xq_t xq, unsigned tok, unsigned tl, unsigned wpr,
                      typename tlmm_arrays<C>::table_t table) {
    const unsigned max_steps = C::max_wpr * BUILD_STEPS;
    (void)max_steps;
    unsigned c = 0, s = 0;
BUILD_TABLE:
    for (unsigned i = 0; i < wpr * BUILD_STEPS; i++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_steps
        TELLME_COUNT("tlmm_build_table");
    BUILD_GROUP:
        for (unsigned u = 0; u < BUILD_GROUPS; u++) {
#pragma HLS UNROLL
            const unsigned set = BUILD_STEPS * c + s;  // groups 5 set + u
            const int a0 = xq[tok][set][u][0], a1 = xq[tok][set][u][1], a2 = xq[tok][set][u][2];
            switch (s) {
            case 0: tlmm_store_group<C>(table, tl, 0 + u, c, a0, a1, a2); break;
            case 1: tlmm_store_group<C>(table, tl, 5 + u, c, a0, a1, a2); break;
            case 2: tlmm_store_group<C>(table, tl, 10 + u, c, a0, a1, a2); break;
            case 3: tlmm_store_group<C>(table, tl, 15 + u, c, a0, a1, a2); break;
            default: tlmm_store_group<C>(table, tl, 20 + u, c, a0, a1, a2); break;
            }
        }
        if (s == BUILD_STEPS - 1) {
            s = 0;
            c++;
        } else {
            s++;
        }
    }
}

// The sum of one index word's 25 entries from token lane tl's tables at word column c.
template <class C>
inline part_t tlmm_word_sum(const typename tlmm_arrays<C>::table_t table, unsigned tl, unsigned c, uint64_t lo,
                            uint64_t hi) {
#pragma HLS INLINE
    part_t part = 0;
INDICES:
    for (unsigned j = 0; j < WORD_INDICES; j++) {
#pragma HLS UNROLL
        typename tlmm_arrays<C>::row_t row;
#pragma HLS ARRAY_PARTITION variable = row complete
        tlmm_bank_row<C>(table, tl, j, c, row);
        part += tlmm_pick<C>(row, word_index(lo, hi, j));
    }
    return part;
}

// The lookup loop of one tile for one token group: `steps` row-steps of wpr words from every stripe
// (from the stripes, storing them in the tile when `store`, or replayed from the tile). The P x TP
// results of a row-step are dequantised one per cycle during the next row-step (or the drain that
// follows the last), each handed to sink.put(bf, token, row, acc, s_x). A row-step takes
// max(wpr, P x TP) cycles, so the results always drain before the next ones land.
template <class C, class SINK, class BUF>
void tlmm_rows(word_stream stripes[C::ports], typename tlmm_arrays<C>::tile_t tile,
               const typename tlmm_arrays<C>::table_t table, unsigned steps, unsigned wpr, bool from_stripes,
               bool store, unsigned first_step, unsigned tok0, unsigned active, const float s_x[C::max_block],
               SINK &sink, BUF &bf) {
    const unsigned P = C::ports, TP = C::token_lanes;
    const unsigned lanes = P * TP;
    const unsigned per_step = wpr > lanes ? wpr : lanes;
    const unsigned max_iters = C::max_rows_iters;
    (void)max_iters;
    acc_t acc[TP][P], pend[TP][P];
#pragma HLS ARRAY_PARTITION variable = acc complete dim = 0
#pragma HLS ARRAY_PARTITION variable = pend complete dim = 0
    unsigned c = 0, rs = 0, addr = 0;
TLMM_ROWS:
    for (unsigned it = 0; it < steps * per_step + lanes; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
#pragma HLS DEPENDENCE variable = tile inter false
        TELLME_COUNT("tlmm_rows");  // a call either stores the tile or replays it, never both
        if (c == 0 && rs > 0) {  // the previous row-step's accumulators wait here to be dequantised
        PEND:
            for (unsigned tl = 0; tl < TP; tl++)
                for (unsigned p = 0; p < P; p++) pend[tl][p] = acc[tl][p];
        }
        if (rs < steps && c < wpr) {
            word_t w[P];
#pragma HLS ARRAY_PARTITION variable = w complete
        FETCH:
            for (unsigned p = 0; p < P; p++) {
#pragma HLS UNROLL
                if (from_stripes) {
                    w[p] = stripes[p].read();
                    if (store) tile[p][addr] = w[p];
                } else {
                    w[p] = tile[p][addr];
                }
            }
            uint64_t lo[P], hi[P];
            part_t part[TP][P];
#pragma HLS ARRAY_PARTITION variable = lo complete
#pragma HLS ARRAY_PARTITION variable = hi complete
#pragma HLS ARRAY_PARTITION variable = part complete dim = 0
            for (unsigned p = 0; p < P; p++) {
#pragma HLS UNROLL
                lo[p] = word_lo(w[p]);
                hi[p] = word_hi(w[p]);
            }
            unsigned idx[P][WORD_INDICES];  // the word's indices: wires
#pragma HLS ARRAY_PARTITION variable = idx complete dim = 0
            for (unsigned p = 0; p < P; p++) {
#pragma HLS UNROLL
                for (unsigned j = 0; j < WORD_INDICES; j++) {
#pragma HLS UNROLL
                    idx[p][j] = word_index(lo[p], hi[p], j);
                }
            }
        LOOKUP_TOKENS:
            for (unsigned tl = 0; tl < TP; tl++) {
#pragma HLS UNROLL
                if (tl < active) {  // a lane without a token: its lookups would be discarded
                    for (unsigned p = 0; p < P; p++) {
#pragma HLS UNROLL
                        part[tl][p] = 0;
                    }
                LOOKUP_BANKS:
                    for (unsigned j = 0; j < WORD_INDICES; j++) {
#pragma HLS UNROLL
#if defined(TELLME_FAST_CSIM) && !defined(__SYNTHESIS__)
                        const entry_t *row = table[tl][j][c];  // the same entries, not copied
#else
                        typename tlmm_arrays<C>::row_t row;  // read once, looked up by all P rows
#pragma HLS ARRAY_PARTITION variable = row complete
                        tlmm_bank_row<C>(table, tl, j, c, row);
#endif
                    LOOKUP_ROWS:
                        for (unsigned p = 0; p < P; p++) {
#pragma HLS UNROLL
                            part[tl][p] += tlmm_pick<C>(row, idx[p][j]);
                        }
                    }
                    for (unsigned p = 0; p < P; p++) {
#pragma HLS UNROLL
                        acc[tl][p] = (c == 0 ? acc_t(0) : acc[tl][p]) + part[tl][p];
                    }
                }
            }
            addr++;
        }
        if (rs > 0 && c < lanes) {
            const unsigned tl = c / P, p = c % P;
            if (tl < active) sink.put(bf, tok0 + tl, (first_step + rs - 1) * P + p, pend[tl][p], s_x[tok0 + tl]);
        }
        if (c == per_step - 1) {
            c = 0;
            rs++;
        } else {
            c++;
        }
    }
    sink.finish(bf);  // what the last puts left in registers
}

// One matrix (rows_per_stripe row-steps of wpr words) for a block of b tokens whose int8 activations
// are in xq (s_x their scales). Tiles hold tile_words / wpr row-steps; every tile serves every token
// group. The caller keeps one call site, so one engine serves every matrix of the design. The outputs
// go to sink.put(bf, ...): the sink says what a step does with them, bf holds the buffers it writes.
template <class C, class SINK, class BUF>
void tlmm_matrix(word_stream stripes[C::ports], unsigned rows_per_stripe, unsigned wpr,
                 const typename tlmm_arrays<C>::xq_t xq, const float s_x[C::max_block], unsigned b,
                 typename tlmm_arrays<C>::table_t table, typename tlmm_arrays<C>::tile_t tile, SINK &sink,
                 BUF &bf) {
    const unsigned TP = C::token_lanes;
    const unsigned tile_steps = C::tile_words / wpr;
    const unsigned groups = (b + TP - 1) / TP;
    const unsigned max_tiles = C::max_tiles, max_groups = (C::max_block + C::token_lanes - 1) / C::token_lanes;
    (void)max_tiles;
    (void)max_groups;
TILES:
    for (unsigned rs0 = 0; rs0 < rows_per_stripe; rs0 += tile_steps) {
#pragma HLS LOOP_TRIPCOUNT max = max_tiles
        const unsigned steps = rows_per_stripe - rs0 < tile_steps ? rows_per_stripe - rs0 : tile_steps;
    TOKEN_GROUPS:
        for (unsigned g = 0; g < groups; g++) {
#pragma HLS LOOP_TRIPCOUNT max = max_groups
            const unsigned tok0 = g * TP;
            const unsigned active = b - tok0 < TP ? b - tok0 : TP;
            if (rs0 == 0 || groups > 1) {  // decode keeps one set of tables for the whole matrix
            BUILD_LANES:
                for (unsigned tl = 0; tl < active; tl++) {
#pragma HLS LOOP_TRIPCOUNT max = TP
                    tlmm_build_table<C>(xq, tok0 + tl, tl, wpr, table);
                }
            }
            tlmm_rows<C, SINK, BUF>(stripes, tile, table, steps, wpr, g == 0, groups > 1, rs0, tok0, active, s_x,
                                    sink, bf);
        }
    }
}

}  // namespace tellme

#endif
