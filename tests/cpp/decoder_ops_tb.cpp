// Test driver for the decoder's element-wise and attention kernels: `decoder_ops_tb OP IN OUT`.
// IN holds an int32 header then the operands (float32 or uint16), as written by
// tests/test_decoder_kernels.py; OUT receives the results. Built with g++ and the sanitizers.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdint.h>
#include <vector>

#include "attention.h"
#include "elementwise.h"
#include "fp16.h"

#ifndef TB_HEAD_DIM
#define TB_HEAD_DIM 30
#endif
static const unsigned HD = TB_HEAD_DIM;

struct ew_config : tellme::elementwise_defaults {
    static const unsigned max_dim = 4096;
    static const unsigned head_dim = HD;
};
struct att_config : tellme::attention_defaults {
    static const unsigned head_dim = HD;
    static const unsigned max_heads = 16;
    static const unsigned max_kv_heads = 16;
    static const unsigned pes = 3;  // prefill: three query PEs share the K/V stream
};
static const unsigned MAX_DIM = ew_config::max_dim;

struct Reader {
    FILE *f;
    template <class T> std::vector<T> take(size_t n) {
        std::vector<T> v(n);
        if (n && fread(v.data(), sizeof(T), n, f) != n) {
            fprintf(stderr, "short input\n");
            exit(2);
        }
        return v;
    }
    int32_t scalar() { return take<int32_t>(1)[0]; }
};

template <class T> static void put(FILE *f, const T *data, size_t n) { fwrite(data, sizeof(T), n, f); }

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s OP IN OUT\n", argv[0]);
        return 2;
    }
    FILE *in = fopen(argv[2], "rb");
    FILE *out = fopen(argv[3], "wb");
    if (!in || !out) return 2;
    Reader r{in};
    const char *op = argv[1];
    const unsigned n = (unsigned)r.scalar();
    if (!strcmp(op, "float_to_half")) {
        std::vector<float> x = r.take<float>(n);
        std::vector<uint16_t> y(n);
        for (unsigned i = 0; i < n; i++) y[i] = tellme::float_to_half(x[i]);
        put(out, y.data(), n);
    } else if (!strcmp(op, "half_to_float")) {
        std::vector<uint16_t> x = r.take<uint16_t>(n);
        std::vector<float> y(n);
        for (unsigned i = 0; i < n; i++) y[i] = tellme::half_to_float(x[i]);
        put(out, y.data(), n);
    } else if (!strcmp(op, "rmsnorm_quant")) {  // n rows of dim
        const unsigned dim = (unsigned)r.scalar();
        const float eps = r.take<float>(1)[0];
        std::vector<float> w = r.take<float>(dim);
        for (unsigned row = 0; row < n; row++) {
            std::vector<float> x = r.take<float>(dim), y(MAX_DIM);
            std::vector<int8_t> yq(MAX_DIM);
            float scale = 0.0f;
            tellme::rmsnorm_quant<ew_config>(x.data(), w.data(), eps, dim, y.data(), yq.data(), scale);
            put(out, y.data(), dim);
            put(out, yq.data(), dim);
            put(out, &scale, 1);
        }
    } else if (!strcmp(op, "gate_up")) {
        const int act = r.scalar();
        std::vector<float> g = r.take<float>(n), u = r.take<float>(n), m(n);
        tellme::gate_up<ew_config>(g.data(), u.data(), act, n, m.data());
        put(out, m.data(), n);
    } else if (!strcmp(op, "rope")) {  // n heads
        std::vector<float> x = r.take<float>(n * HD);
        std::vector<float> c = r.take<float>(HD), s = r.take<float>(HD);
        tellme::rope<ew_config>(x.data(), n, c.data(), s.data());
        put(out, x.data(), n * HD);
    } else if (!strcmp(op, "attention")) {  // n = length; then heads, kv_heads; q, k, v (float)
        const unsigned heads = (unsigned)r.scalar(), kv_heads = (unsigned)r.scalar();
        std::vector<float> q = r.take<float>(heads * HD);
        std::vector<float> k = r.take<float>(n * kv_heads * HD), v = r.take<float>(n * kv_heads * HD);
        std::vector<uint16_t> kc(n * kv_heads * HD), vc(n * kv_heads * HD);
        for (unsigned t = 0; t < n; t++)
            tellme::kv_append<att_config>(&k[t * kv_heads * HD], &v[t * kv_heads * HD], kv_heads, t,
                                        kc.data(), vc.data());
        std::vector<float> o(heads * HD);
        tellme::decode_attention<att_config>(q.data(), heads, kv_heads, n, kc.data(), vc.data(), o.data());
        put(out, kc.data(), kc.size());
        put(out, o.data(), o.size());
    } else if (!strcmp(op, "attention_block")) {  // n = cache length; heads, kv_heads, b queries at n - b
        const unsigned heads = (unsigned)r.scalar(), kv_heads = (unsigned)r.scalar(), b = (unsigned)r.scalar();
        std::vector<float> q = r.take<float>(b * heads * HD);
        std::vector<float> k = r.take<float>(n * kv_heads * HD), v = r.take<float>(n * kv_heads * HD);
        std::vector<uint16_t> kc(n * kv_heads * HD), vc(n * kv_heads * HD);
        for (unsigned t = 0; t < n; t++)
            tellme::kv_append<att_config>(&k[t * kv_heads * HD], &v[t * kv_heads * HD], kv_heads, t, kc.data(), vc.data());
        std::vector<float> o(b * heads * HD);
        tellme::attention_block<att_config>(q.data(), heads * HD, b, n - b, heads, kv_heads, kc.data(),
                                                  vc.data(), o.data(), heads * HD);
        put(out, o.data(), o.size());
    } else {
        fprintf(stderr, "unknown op %s\n", op);
        return 2;
    }
    fclose(in);
    return fclose(out) == 0 ? 0 : 1;
}
