// Host-side helpers shared by the testbenches and the C-simulation bridge (never synthesised): raw
// little-endian files written by numpy, bytes <-> 128-bit words, float comparison.
#ifndef TELLME_TB_IO_H
#define TELLME_TB_IO_H

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"

namespace tellme_tb {

// Read exactly `count` elements of T from a raw file; false (with a message) on any mismatch.
template <class T> bool read_array(const std::string &path, size_t count, std::vector<T> &out) {
    FILE *f = std::fopen(path.c_str(), "rb");
    if (!f) {
        std::fprintf(stderr, "cannot open %s\n", path.c_str());
        return false;
    }
    out.assign(count, T());
    const size_t got = count ? std::fread(out.data(), sizeof(T), count, f) : 0;
    const bool at_end = std::fgetc(f) == EOF;
    std::fclose(f);
    if (got != count || !at_end) {
        std::fprintf(stderr, "%s: expected exactly %zu values of %zu bytes\n", path.c_str(), count, sizeof(T));
        return false;
    }
    return true;
}

// Does a word's memory hold its 16 bytes little-endian (so bytes and words convert by memcpy)?
inline bool words_are_bytes() {
    static const bool same = [] {
        if (sizeof(tellme::word_t) != 16) return false;
        const tellme::word_t w = tellme::make_word(0x0706050403020100ull, 0x0f0e0d0c0b0a0908ull);
        unsigned char b[16];
        std::memcpy(b, &w, 16);
        for (unsigned i = 0; i < 16; i++)
            if (b[i] != i) return false;
        return true;
    }();
    return same;
}

// n_bytes bytes (a multiple of 16) into words / words back into bytes.
inline void bytes_to_words(const void *bytes, size_t n_bytes, std::vector<tellme::word_t> &words) {
    const size_t n = n_bytes / 16;
    words.resize(n);
    if (words_are_bytes()) {
        if (n) std::memcpy(static_cast<void *>(words.data()), bytes, n * 16);
        return;
    }
    const unsigned char *b = static_cast<const unsigned char *>(bytes);
    for (size_t i = 0; i < n; i++) {
        uint64_t lo, hi;
        std::memcpy(&lo, b + 16 * i, 8);
        std::memcpy(&hi, b + 16 * i + 8, 8);
        words[i] = tellme::make_word(lo, hi);
    }
}

inline void words_to_bytes(const std::vector<tellme::word_t> &words, void *bytes) {
    if (words_are_bytes()) {
        if (!words.empty()) std::memcpy(bytes, static_cast<const void *>(words.data()), words.size() * 16);
        return;
    }
    unsigned char *b = static_cast<unsigned char *>(bytes);
    for (size_t i = 0; i < words.size(); i++) {
        const uint64_t lo = tellme::word_lo(words[i]), hi = tellme::word_hi(words[i]);
        std::memcpy(b + 16 * i, &lo, 8);
        std::memcpy(b + 16 * i + 8, &hi, 8);
    }
}

// Largest |got - want| over n values, and the largest |want|.
inline void max_difference(const float *got, const float *want, size_t n, float &worst, float &peak) {
    worst = 0.0f;
    peak = 0.0f;
    for (size_t i = 0; i < n; i++) {
        const float diff = std::fabs(got[i] - want[i]);
        worst = diff > worst ? diff : worst;
        peak = std::fabs(want[i]) > peak ? std::fabs(want[i]) : peak;
    }
}

}  // namespace tellme_tb

#endif
