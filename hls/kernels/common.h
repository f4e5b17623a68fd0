// What every kernel shares: the 128-bit word every buffer is streamed in, the integer types of the
// lookup datapath, bit casts, and the loop counters of the profiling build.
//
// Types. The synthesised design uses ap_int of the exact width (10-bit table entries, 16-bit partial
// sums). The C simulation built with TELLME_FAST_CSIM uses native integers of the same values
// instead (never under __SYNTHESIS__): every entry fits both (|entry| <= 384, |25 entries| <= 9600), so
// results are bit-identical, which tests/test_csim_types.py checks by building both and comparing.
//
// Profiling. Built with -DTELLME_PROFILE, TELLME_COUNT("label") at the top of a pipelined loop's body
// counts its iterations under the loop's label; hls/perf.py predicts every count (tests compare them).
#ifndef TELLME_COMMON_H
#define TELLME_COMMON_H

#include <stdint.h>
#include <string.h>

#include <cmath>

#include "ap_int.h"
#include "hls_stream.h"

#ifdef TELLME_PROFILE
#include <map>
#include <string>
#endif

// Pragmas whose argument is a keyword (a memory type) cannot take a C++ constant, so those parameters are
// macros, expanded into the pragma by _Pragma. config.h defines them from the design; without config.h
// they take the defaults stated here (the KV260 preset's).
#define TELLME_PRAGMA_STRING(x) _Pragma(#x)
#define TELLME_PRAGMA(x) TELLME_PRAGMA_STRING(x)
#ifndef TELLME_TILE_STORAGE
#define TELLME_TILE_STORAGE uram  // the TLMM's prefill tile buffer
#endif
#ifndef TELLME_FIFO_STORAGE
#define TELLME_FIFO_STORAGE uram  // the FIFOs between prefetcher and engine
#endif
#ifndef TELLME_ACT_STORAGE
#define TELLME_ACT_STORAGE uram  // the engine's activations (residual stream, attention output, gate x up)
#endif

// The engine's large buffers are static in the C simulation (they do not fit a thread's stack) and plain
// locals in synthesis: no state lives across calls, and URAM cannot be initialised (UG1399).
#ifdef __SYNTHESIS__
#define TELLME_STATIC
#else
#define TELLME_STATIC static
#endif

namespace tellme {

typedef ap_uint<128> word_t;  // every streamed buffer: stripes, K/V cache, params, hidden states
typedef hls::stream<word_t> word_stream;

static const unsigned WORD_BITS = 128;
static const unsigned WORD_INDICES = 25;  // 5-bit group indices per index word (bits 125..127 zero)
static const unsigned INDEX_BITS = 5;
static const unsigned ZERO_INDEX = 13;  // the all-zero group
static const unsigned TABLE_ENTRIES = 27;  // sums w0*a0 + w1*a1 + w2*a2 of one group, w in {-1, 0, 1}
static const unsigned FLOATS_PER_WORD = 4;
static const unsigned HALVES_PER_WORD = 8;
static const unsigned INT8_PER_WORD = 16;

#if defined(TELLME_FAST_CSIM) && !defined(__SYNTHESIS__)
typedef int16_t entry_t;  // one table entry, |value| <= 384
typedef int16_t part_t;   // a word's 25 entries summed, |value| <= 9600
typedef int32_t acc_t;    // a row's accumulator
typedef int32_t mac_t;    // the int8 LM head's accumulator
#else
typedef ap_int<10> entry_t;
typedef ap_int<15> part_t;
typedef ap_int<32> acc_t;
typedef ap_int<32> mac_t;
#endif

// The two 64-bit halves of a word: indices and fp16 values are cut out of these with shifts, which
// are wires in hardware and cheap in the C simulation.
// The fast C simulation reads and writes the two 64-bit limbs the C++ model of ap_uint<128> stores them
// in (the same bits: tests build both ways and compare), instead of 128-bit shifts.
#if defined(TELLME_FAST_CSIM) && !defined(__SYNTHESIS__)
inline uint64_t word_lo(const word_t &w) { return w.V.get_pVal(0); }
inline uint64_t word_hi(const word_t &w) { return w.V.get_pVal(1); }

inline word_t make_word(uint64_t lo, uint64_t hi) {
    word_t w;
    w.V.set_pVal(0, lo);
    w.V.set_pVal(1, hi);
    return w;
}
#else
inline uint64_t word_lo(const word_t &w) { return w.range(63, 0).to_uint64(); }
inline uint64_t word_hi(const word_t &w) { return w.range(127, 64).to_uint64(); }

inline word_t make_word(uint64_t lo, uint64_t hi) {
    word_t w = hi;
    w <<= 64;
    w |= word_t(lo);
    return w;
}
#endif

// Index j (0..24) of an index word given as its halves: bits 5j .. 5j+4.
inline unsigned word_index(uint64_t lo, uint64_t hi, unsigned j) {
#pragma HLS INLINE
    const unsigned bit = INDEX_BITS * j;
    if (bit + INDEX_BITS <= 64) return unsigned((lo >> bit) & 31u);
    if (bit >= 64) return unsigned((hi >> (bit - 64)) & 31u);
    return unsigned(((lo >> bit) | (hi << (64 - bit))) & 31u);  // index 12 straddles the halves
}

inline float bits_to_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

inline uint32_t float_to_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

// Float k (0..3) of a word of four little-endian float32.
inline float word_float(uint64_t lo, uint64_t hi, unsigned k) {
#pragma HLS INLINE
    const uint64_t half = k < 2 ? lo : hi;
    return bits_to_float(uint32_t(half >> (32 * (k & 1))));
}

// e^x as the accelerator computes it, bit for bit the same in g++, in the hardware and in numpy
// (tellme.models.numerics.exp): t = x * log2(e), then 2^floor(t) * p(t - floor(t)) with a degree-6
// polynomial, 2^k applied to the exponent field. Only IEEE operations in a fixed order, where a library
// exp's last bits differ between libm, numpy and the HLS math library. Below -87: 0; above 88: inf.
inline float exp_poly(float x) {
#pragma HLS INLINE
    if (x < -87.0f) return 0.0f;
    if (x > 88.0f) return bits_to_float(0x7F800000u);
    const float t = x * 1.44269502f;
    const float k = std::floor(t);
    const float f = t - k;
    float p = 0.000217022462f;
    p = p * f + 0.00124396908f;
    p = p * f + 0.00967884064f;
    p = p * f + 0.0554833412f;
    p = p * f + 0.24022983f;
    p = p * f + 0.693147004f;
    p = p * f + 1.0f;
    return bits_to_float(uint32_t(int32_t(float_to_bits(p)) + int32_t(k) * (1 << 23)));  // k < 0 too
}

#ifdef TELLME_PROFILE
namespace profile {
inline std::map<std::string, uint64_t> &counters() {
    static std::map<std::string, uint64_t> table;
    return table;
}
inline uint64_t &slot(const char *label) { return counters()[label]; }
}  // namespace profile
#define TELLME_COUNT(label)                                                  \
    do {                                                                     \
        static uint64_t &tellme_counter_ = ::tellme::profile::slot(label);   \
        tellme_counter_++;                                                   \
    } while (0)
#else
#define TELLME_COUNT(label) \
    do {                    \
    } while (0)
#endif

}  // namespace tellme

#endif
