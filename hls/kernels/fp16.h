// IEEE binary16 bit patterns for the KV cache, rounded to nearest even exactly as numpy.float16 does.
// Plain integer logic (no half type needed), so the same code synthesises and runs under g++.
#ifndef TELLME_FP16_H
#define TELLME_FP16_H

#include <stdint.h>
#include <string.h>

namespace tellme {

inline uint32_t float_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u;
}

inline float bits_float(uint32_t u) {
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

// Shift right by n (n >= 1) with round to nearest, ties to even, on the bits shifted out.
inline uint32_t shift_round_even(uint32_t value, unsigned n) {
    if (n > 31) return 0;
    const uint32_t kept = value >> n;
    const uint32_t rest = value & ((1u << n) - 1u);
    const uint32_t half = 1u << (n - 1);
    return kept + ((rest > half || (rest == half && (kept & 1u))) ? 1u : 0u);
}

inline uint16_t float_to_half(float f) {
    const uint32_t u = float_bits(f);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const int32_t exp = (int32_t)((u >> 23) & 0xFFu);
    const uint32_t mant = u & 0x7FFFFFu;
    if (exp == 0xFF) return (uint16_t)(sign | 0x7C00u | (mant ? 0x200u : 0u));  // inf, nan
    const int32_t half_exp = exp - 127 + 15;
    if (half_exp >= 0x1F) return (uint16_t)(sign | 0x7C00u);  // overflow -> inf
    if (half_exp <= 0) {  // subnormal half (or zero): value = full_mant * 2^(exp-150), unit 2^-24
        if (half_exp < -10) return sign;  // below half the smallest subnormal
        const uint32_t full = mant | 0x800000u;
        return (uint16_t)(sign | shift_round_even(full, (unsigned)(14 - half_exp)));
    }
    // normal: rounding may carry into the exponent (and up to inf), which the addition handles
    const uint32_t rounded = shift_round_even(((uint32_t)half_exp << 23) | mant, 13);
    return (uint16_t)(sign | rounded);
}

inline float half_to_float(uint16_t h) {
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t mant = h & 0x3FFu;
    if (exp == 0x1F) return bits_float(sign | 0x7F800000u | (mant << 13));
    if (exp != 0) return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
    if (mant == 0) return bits_float(sign);
    // normalise a subnormal: shift = leading zeros of the 10-bit mantissa + 1, found with a fixed-bound
    // loop (a data-dependent loop would stop the caller's pipeline)
    unsigned shift = 0;
    bool found = false;
leading_zeros:
    for (int bit = 9; bit >= 0; bit--) {
#pragma HLS UNROLL
        if (!found && ((mant >> bit) & 1u)) {
            shift = (unsigned)(10 - bit);
            found = true;
        }
    }
    mant <<= shift;
    return bits_float(sign | ((uint32_t)(113 - shift) << 23) | ((mant & 0x3FFu) << 13));
}

}  // namespace tellme

#endif
