// Attention over the fp16 KV cache, streamed through the weight ports.
//
// Layout (tellme.models.ddr_image): a K or V row is kv_heads heads of head_dim_pad values (each head
// padded to whole chunks), cut into chunks of 8P values; stripe p holds values 8p .. 8p+7 of every
// chunk, so one word from each of the P stripes is one chunk. Rows come in blocks of R positions:
// R K rows, then R V rows.
//
// Per layer, the b queries of a block (positions first .. first+b-1) take the positions in blocks of R,
// aligned to multiples of R whatever the call: a block's rows below `first` come from the cache in DDR
// (streamed by the prefetcher), the others from the block's own K and V (kept on chip, fp16 as
// stored). Every K/V block arrives from the stripes once: the first query reads it from the stream and
// keeps it in kvbuf, the others replay it (TeLLMe's shared K/V stream). Each query keeps an online
// softmax (running max m, sum l, accumulator acc) updated once per block:
//   s_t = (q . k_t) * head_dim^-0.5     QK: A lanes a cycle, one query head at a time (GQA: a K chunk
//                                       serves the group's query heads one after another)
//   m' = max(m, max_t s_t), c = exp(m - m'), p_t = exp(s_t - m'), l = l c + sum_t p_t
//   acc = acc c + sum_t p_t v_t          PV: A lanes a cycle
// and the output is acc / l. Float32 throughout. A query's blocks and their order depend on its
// position only, never on how the positions were split into calls, so prefill equals decode bit for bit.
#ifndef TELLME_ATTENTION_H
#define TELLME_ATTENTION_H

#include <cmath>

#include "common.h"
#include "elementwise.h"
#include "fp16.h"

namespace tellme {

// Every attention parameter; a design's attention_config derives from this and overrides what differs.
struct attention_defaults {
    static const unsigned ports = 6;  // P: a chunk is one word from each stripe
    static const unsigned chunk = 48;  // fp16 values per chunk: 8P
    static const unsigned lanes = 24;  // A: multiply lanes of QK and of PV (chunk / A cycles a chunk)
    static const unsigned head_dim = 96;
    static const unsigned head_dim_pad = 96;  // head_dim rounded up to whole chunks
    static const unsigned heads = 16;  // query heads
    static const unsigned kv_heads = 16;
    static const unsigned kv_block = 16;  // R: positions per K/V block
    static const unsigned max_block = 16;  // B: queries of a prefill block
    static const unsigned max_context = 1024;
    static constexpr float scale = 0.102062076f;  // the scores' factor: float32(head_dim ** -0.5) as numpy
    // The once-a-row trees of SCORES (parts - 1 adds) and ROW_SUMS (R adds) on this many adders, at this
    // II: all of them at II=1 on large devices, a few shared ones where LUTs or DSPs are short.
    static const unsigned score_adders = 3, score_ii = 1;
    static const unsigned sum_adders = 16, sum_ii = 1;
};

// Iterations between two updates of one PV accumulator that the schedule may rely on (the generator
// refuses a shape whose row_chunks x group x folds is smaller).
static const unsigned ACC_DISTANCE = 16;

enum kv_source { KV_STREAM = 0, KV_REPLAY = 1, KV_ONCHIP = 2 };

template <class C> struct attention_arrays {
    static const unsigned group = C::heads / C::kv_heads;
    static const unsigned folds = C::chunk / C::lanes;
    static const unsigned head_chunks = C::head_dim_pad / C::chunk;
    static const unsigned row_chunks = C::kv_heads * head_chunks;  // = K/V row words per stripe
    static const unsigned parts = head_chunks * folds;  // partial dot products of one score
    static const unsigned q_pad = C::heads * C::head_dim_pad;
    static const unsigned kv_pad = C::kv_heads * C::head_dim_pad;
    static const unsigned q_sets = q_pad / C::lanes;  // a query row as sets of A lanes
    static const unsigned rows = C::kv_block;  // of one block
    // Every array a pipelined loop reads many values of at once has those values' bank as a declared
    // dimension (completely partitioned), so each access has a constant bank.
    typedef word_t kvbuf_t[2][C::kv_block][row_chunks][C::ports];
    typedef float q_t[C::max_block][q_sets][C::lanes];  // value (h, d) at [h * head_dim_pad + d] in A lanes
    typedef uint16_t kvcur_t[C::max_block][row_chunks][C::ports][HALVES_PER_WORD];  // as the stripes carry it
    typedef float state_t[C::max_block][C::heads];
    typedef float acc_t[C::max_block][q_sets][C::lanes];
    static_assert(C::chunk == HALVES_PER_WORD * C::ports, "a chunk is one word from every stripe");
    static_assert(C::chunk % C::lanes == 0, "lanes divide a chunk");
    static_assert(C::head_dim_pad % C::chunk == 0, "heads are padded to whole chunks");
    static_assert(C::heads % C::kv_heads == 0, "query heads are a multiple of KV heads");
};

// One chunk of K or V values (fp16 bits -> float) for row t, chunk c: from the stripes (keeping the
// words in kvbuf[which][t]), from kvbuf, or from the block's own cache row kvcur[own]. The 16-bit
// patterns are selected first, so one converter serves each value whatever its source.
template <class C>
void load_chunk(kv_source source, word_stream stripes[C::ports], typename attention_arrays<C>::kvbuf_t kvbuf,
                const typename attention_arrays<C>::kvcur_t kvcur, unsigned which, unsigned t, unsigned own,
                unsigned c, float values[C::chunk]) {
#pragma HLS INLINE
    for (unsigned p = 0; p < C::ports; p++) {
#pragma HLS UNROLL
        uint64_t lo = 0, hi = 0;
        if (source == KV_STREAM) {
            const word_t w = stripes[p].read();
            kvbuf[which][t][c][p] = w;
            lo = word_lo(w);
            hi = word_hi(w);
        } else if (source == KV_REPLAY) {
            lo = word_lo(kvbuf[which][t][c][p]);
            hi = word_hi(kvbuf[which][t][c][p]);
        }
        for (unsigned h = 0; h < HALVES_PER_WORD; h++) {
#pragma HLS UNROLL
            const uint16_t bits = source == KV_ONCHIP ? kvcur[own][c][p][h]
                                                      : uint16_t((h < 4 ? lo : hi) >> (16 * (h & 3)));
            values[HALVES_PER_WORD * p + h] = half_to_float(bits);
        }
    }
}

// Fold f of a chunk's dot product with query i's lane set `set`: A products as a tree.
template <class C>
inline float chunk_dot(const typename attention_arrays<C>::q_t q, unsigned i, unsigned set,
                       const float values[C::chunk], unsigned f) {
#pragma HLS INLINE
    float prod[C::lanes];
#pragma HLS ARRAY_PARTITION variable = prod complete
    for (unsigned a = 0; a < C::lanes; a++) {
#pragma HLS UNROLL
        prod[a] = q[i][set][a] * values[f * C::lanes + a];
    }
    return tree_sum<C::lanes>::run(prod);
}

// The next step of the QK and PV walks over a block's rows: folds of a chunk fastest, then the group's
// query heads, then the row's chunks, then rows.
template <class C> inline void next_step(unsigned &t, unsigned &c, unsigned &gq, unsigned &f) {
#pragma HLS INLINE
    typedef attention_arrays<C> AA;
    if (f < AA::folds - 1) {
        f++;
        return;
    }
    f = 0;
    if (gq < AA::group - 1) {
        gq++;
        return;
    }
    gq = 0;
    if (c < AA::row_chunks - 1) {
        c++;
        return;
    }
    c = 0;
    t++;
}

// One block of K/V rows against query i: `cached` rows from the cache (source: the stream or kvbuf),
// then `own` rows of the block's own K and V from kcur/vcur[own_first]: scores, the online-softmax
// update, the value sum.
template <class C>
void attend_block(kv_source source, word_stream stripes[C::ports], typename attention_arrays<C>::kvbuf_t kvbuf,
                  const typename attention_arrays<C>::kvcur_t kcur, const typename attention_arrays<C>::kvcur_t vcur,
                  unsigned cached, unsigned own, unsigned own_first, const typename attention_arrays<C>::q_t q,
                  unsigned i, typename attention_arrays<C>::state_t m, typename attention_arrays<C>::state_t l,
                  typename attention_arrays<C>::acc_t acc) {
    typedef attention_arrays<C> AA;
    const unsigned H = C::heads, R = AA::rows, G = AA::group, F = AA::folds, HC = AA::head_chunks;
    const unsigned iters = AA::row_chunks * G * F;  // per row
    const unsigned max_iters = R * AA::row_chunks * AA::group * AA::folds, max_scores = R * C::heads;
    (void)max_iters;
    (void)max_scores;
    const unsigned SETS = C::head_dim_pad / C::lanes;  // lane sets of one head
    const unsigned rows = cached + own;
    float psum[R][H][AA::parts];
#pragma HLS ARRAY_PARTITION variable = psum complete dim = 3
    float p[R][H];
#pragma HLS ARRAY_PARTITION variable = p complete dim = 1
    float corr[H];
    float values[C::chunk];
#pragma HLS ARRAY_PARTITION variable = values complete

    unsigned t = 0, c = 0, gq = 0, f = 0;
QK:
    for (unsigned it = 0; it < rows * iters; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
        TELLME_COUNT("attention_qk");
        if (gq == 0 && f == 0)
            load_chunk<C>(t < cached ? source : KV_ONCHIP, stripes, kvbuf, kcur, 0, t, own_first + t - cached, c,
                          values);
        const unsigned kvh = c / HC, sub = c % HC, qh = kvh * G + gq;
        psum[t][qh][sub * F + f] = chunk_dot<C>(q, i, qh * SETS + sub * F + f, values, f);
        next_step<C>(t, c, gq, f);
    }
    unsigned st = 0, sh = 0;
    const unsigned score_ii = C::score_ii, sum_ii = C::sum_ii;  // pragma values
    const unsigned score_adders = C::score_adders, sum_adders = C::sum_adders;
    (void)score_ii;
    (void)sum_ii;
    (void)score_adders;
    (void)sum_adders;
SCORES:
    for (unsigned it = 0; it < rows * H; it++) {
#pragma HLS PIPELINE II = score_ii
#pragma HLS LOOP_TRIPCOUNT max = max_scores
#pragma HLS ALLOCATION operation instances = fadd limit = score_adders
        TELLME_COUNT("attention_scores");
        float part[AA::parts];
#pragma HLS ARRAY_PARTITION variable = part complete
        for (unsigned k = 0; k < AA::parts; k++) part[k] = psum[st][sh][k];
        p[st][sh] = tree_sum<AA::parts>::run(part) * C::scale;  // the score, until EXPS replaces it
        if (sh == H - 1) {
            sh = 0;
            st++;
        } else {
            sh++;
        }
    }
BLOCK_MAX:
    for (unsigned h = 0; h < H; h++) {
#pragma HLS PIPELINE II = 1
        TELLME_COUNT("attention_max");
        float top = m[i][h];
        for (unsigned r = 0; r < R; r++) {
#pragma HLS UNROLL
            if (r < rows) top = p[r][h] > top ? p[r][h] : top;
        }
        corr[h] = exp_poly(m[i][h] - top);  // 0 before the first block (m = -inf)
        m[i][h] = top;
    }
    unsigned et = 0, eh = 0;
EXPS:
    for (unsigned it = 0; it < rows * H; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_scores
#pragma HLS DEPENDENCE variable = p inter false
        TELLME_COUNT("attention_exps");  // each element read and rewritten by its own iteration only
        p[et][eh] = exp_poly(p[et][eh] - m[i][eh]);
        if (eh == H - 1) {
            eh = 0;
            et++;
        } else {
            eh++;
        }
    }
ROW_SUMS:
    for (unsigned h = 0; h < H; h++) {
#pragma HLS PIPELINE II = sum_ii
#pragma HLS ALLOCATION operation instances = fadd limit = sum_adders
        TELLME_COUNT("attention_sums");
        float column[R];
#pragma HLS ARRAY_PARTITION variable = column complete
        for (unsigned r = 0; r < R; r++) {
#pragma HLS UNROLL
            column[r] = r < rows ? p[r][h] : 0.0f;
        }
        l[i][h] = l[i][h] * corr[h] + tree_sum<R>::run(column);
    }
    t = 0, c = 0, gq = 0, f = 0;
PV:
    for (unsigned it = 0; it < rows * iters; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
#pragma HLS DEPENDENCE variable = acc inter RAW true distance = ACC_DISTANCE
        TELLME_COUNT("attention_pv");
        // An accumulator element is updated once per row, row_chunks x group x folds iterations apart:
        // at least ACC_DISTANCE (the generator checks), which the schedule is told.
        if (gq == 0 && f == 0)
            load_chunk<C>(t < cached ? source : KV_ONCHIP, stripes, kvbuf, vcur, 1, t, own_first + t - cached, c,
                          values);
        const unsigned kvh = c / HC, sub = c % HC, qh = kvh * G + gq;
        const unsigned set = qh * SETS + sub * F + f;
        const float weight = p[t][qh], rescale = corr[qh];
        for (unsigned a = 0; a < C::lanes; a++) {
#pragma HLS UNROLL
            const float old = t == 0 ? acc[i][set][a] * rescale : acc[i][set][a];
            acc[i][set][a] = old + weight * values[f * C::lanes + a];
        }
        next_step<C>(t, c, gq, f);
    }
}

// Reset the online softmax of queries 0 .. b-1.
template <class C>
void attention_init(unsigned b, typename attention_arrays<C>::state_t m, typename attention_arrays<C>::state_t l,
                    typename attention_arrays<C>::acc_t acc) {
    const unsigned SETS = attention_arrays<C>::q_sets, max_iters = C::max_block * SETS;
    (void)max_iters;
    unsigned i = 0, set = 0;
ATTENTION_INIT:
    for (unsigned it = 0; it < b * SETS; it++) {
#pragma HLS PIPELINE II = 1
#pragma HLS LOOP_TRIPCOUNT max = max_iters
        TELLME_COUNT("attention_init");
        for (unsigned a = 0; a < C::lanes; a++) {
#pragma HLS UNROLL
            acc[i][set][a] = 0.0f;
        }
        if (set < C::heads) {  // a query's first `heads` iterations also reset its m and l
            m[i][set] = -INFINITY;
            l[i][set] = 0.0f;
        }
        if (set == SETS - 1) {
            set = 0;
            i++;
        } else {
            set++;
        }
    }
}

// out[i][qh * head_dim + d] = acc / l for d < head_dim (the padding dropped), one value a cycle.
template <class C, unsigned OUT_DIM>
void attention_output(unsigned i, const typename attention_arrays<C>::state_t l,
                      const typename attention_arrays<C>::acc_t acc, float out[C::max_block][OUT_DIM],
                      unsigned offset) {
    const unsigned total = C::heads * C::head_dim;
    unsigned h = 0, d = 0;
ATTENTION_OUT:
    for (unsigned it = 0; it < total; it++) {
#pragma HLS PIPELINE II = 1
        TELLME_COUNT("attention_out");
        const unsigned at = h * C::head_dim_pad + d;
        out[i][offset + it] = acc[i][at / C::lanes][at % C::lanes] / l[i][h];
        if (d == C::head_dim - 1) {
            d = 0;
            h++;
        } else {
            d++;
        }
    }
}

}  // namespace tellme

#endif
