// Host-side helpers shared by the testbench and the C-simulation bridge (never synthesised):
// raw little-endian files written by numpy, bytes <-> AXI words, bit-exact float comparison.
#ifndef TELLME_TB_IO_H
#define TELLME_TB_IO_H

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "ap_int.h"

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

// Pack bytes into AXI words, byte b of word w = bytes[w * W/8 + b]; the last word is zero-filled.
// Filled through pieces of up to 64 bits (byte-wise access to wide ap_uint is slow).
template <int W> std::vector<ap_uint<W> > to_words(const uint8_t *bytes, size_t n_bytes) {
    const size_t word_bytes = W / 8, piece_bytes = word_bytes < 8 ? word_bytes : 8;
    std::vector<ap_uint<W> > words((n_bytes + word_bytes - 1) / word_bytes, ap_uint<W>(0));
    for (size_t start = 0; start < n_bytes; start += piece_bytes) {
        uint64_t piece = 0;
        for (size_t b = 0; b < piece_bytes && start + b < n_bytes; b++) piece |= uint64_t(bytes[start + b]) << (8 * b);
        words[start / word_bytes] |= ap_uint<W>(piece) << int(8 * (start % word_bytes));
    }
    return words;
}

// Number of elements whose bit patterns differ; prints the first few.
inline size_t count_mismatches(const float *got, const float *want, size_t n, const char *label) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t a, b;
        std::memcpy(&a, &got[i], sizeof a);
        std::memcpy(&b, &want[i], sizeof b);
        if (a != b) {
            if (bad < 5) std::fprintf(stderr, "%s[%zu]: got %.9g, want %.9g\n", label, i, got[i], want[i]);
            bad++;
        }
    }
    return bad;
}

} // namespace tellme_tb

#endif
