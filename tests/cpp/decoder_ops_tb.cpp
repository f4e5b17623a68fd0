// Test driver for the decoder's element-wise and attention kernels: `decoder_ops_tb OP IN OUT`.
// IN holds an int32 header then the operands (float32 or uint16), as written by
// tests/test_decoder_kernels.py; OUT receives the results. Built with g++ -Wall -Wextra -Werror and the
// sanitizers, against hls4ml's ap_types.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdint.h>
#include <vector>

#include "attention.h"
#include "elementwise.h"
#include "fp16.h"

static const unsigned HD = TB_HEAD_DIM;
static const unsigned DIM = 4140;  // a multiple of the 15 lanes (and of 60)
static const unsigned GROUPS = DIM / 3;

struct ew_config : tellme::elementwise_defaults {};
struct att_config : tellme::attention_defaults {
    static const unsigned ports = 6;
    static const unsigned chunk = 48;
    static const unsigned lanes = 12;
    static const unsigned head_dim = HD;
    static const unsigned head_dim_pad = (HD + 47) / 48 * 48;
    static const unsigned heads = 4;
    static const unsigned kv_heads = 2;
    static const unsigned kv_block = 16;
    static const unsigned max_block = 16;
    static const unsigned max_context = 256;
    static constexpr float scale = TB_SCALE;  // float32(head_dim ** -0.5), from the test
};
typedef tellme::attention_arrays<att_config> AA;

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

static float x2[1][DIM], w2[1][DIM], y2[1][DIM];
static int8_t xq[1][GROUPS / 5][5][3];
static AA::q_t q;
static AA::kvcur_t kcur, vcur;
static AA::kvbuf_t kvbuf;
static float att_m[att_config::max_block][att_config::heads], att_l[att_config::max_block][att_config::heads];
static AA::acc_t att_acc;
static float att_out[att_config::max_block][att_config::heads * HD];

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
    } else if (!strcmp(op, "exp")) {
        std::vector<float> x = r.take<float>(n), y(n);
        for (unsigned i = 0; i < n; i++) y[i] = tellme::exp_poly(x[i]);
        put(out, y.data(), n);
    } else if (!strcmp(op, "activate")) {  // n values, then the activation
        const int act = r.scalar();
        std::vector<float> x = r.take<float>(n), y(n);
        for (unsigned i = 0; i < n; i++) y[i] = tellme::activate(x[i], act);
        put(out, y.data(), n);
    } else if (!strcmp(op, "norm_quant")) {  // n rows of dim: normalised values, int8 groups, s_x
        const unsigned dim = (unsigned)r.scalar();
        const float eps = r.take<float>(1)[0];
        std::vector<float> w = r.take<float>(dim);
        for (unsigned i = 0; i < dim; i++) w2[0][i] = w[i];
        const unsigned groups = (dim + 2) / 3;
        for (unsigned row = 0; row < n; row++) {
            std::vector<float> x = r.take<float>(dim);
            for (unsigned i = 0; i < dim; i++) x2[0][i] = x[i];
            const float scale = tellme::norm_quant<ew_config, 1, DIM, DIM, DIM, 1, GROUPS>(x2, 0, 0, w2, 0, eps, dim,
                                                                                     groups, y2, xq, 0);
            put(out, &y2[0][0], dim);
            std::vector<int8_t> flat(dim);
            for (unsigned i = 0; i < dim; i++) flat[i] = xq[0][i / 15][(i / 3) % 5][i % 3];
            put(out, flat.data(), dim);
            put(out, &scale, 1);
        }
    } else if (!strcmp(op, "attention")) {  // n = positions; a query at position n - 1 over all of them
        std::vector<float> qv = r.take<float>(att_config::heads * HD);
        std::vector<uint16_t> k = r.take<uint16_t>(size_t(n) * att_config::kv_heads * HD);
        std::vector<uint16_t> v = r.take<uint16_t>(size_t(n) * att_config::kv_heads * HD);
        for (unsigned h = 0; h < att_config::heads; h++)
            for (unsigned d = 0; d < HD; d++) {
                const unsigned at = h * att_config::head_dim_pad + d;
                q[0][at / att_config::lanes][at % att_config::lanes] = qv[h * HD + d];
            }
        tellme::word_stream stripes[att_config::ports];
        tellme::attention_init<att_config>(1, att_m, att_l, att_acc);
        for (unsigned begin = 0; begin < n; begin += att_config::kv_block) {
            const unsigned rows = n - begin < att_config::kv_block ? n - begin : att_config::kv_block;
            for (unsigned t = 0; t < rows; t++)
                for (unsigned h = 0; h < att_config::kv_heads; h++)
                    for (unsigned d = 0; d < HD; d++) {
                        const size_t src = (size_t(begin + t) * att_config::kv_heads + h) * HD + d;
                        const unsigned at = h * att_config::head_dim_pad + d, c = at / att_config::chunk;
                        kcur[t][c][(at % att_config::chunk) / 8][at % 8] = k[src];
                        vcur[t][c][(at % att_config::chunk) / 8][at % 8] = v[src];
                    }
            tellme::attend_block<att_config>(tellme::KV_ONCHIP, stripes, kvbuf, kcur, vcur, 0, rows, 0, q, 0, att_m,
                                             att_l, att_acc);
        }
        tellme::attention_output<att_config, att_config::heads * HD>(0, att_l, att_acc, att_out, 0);
        put(out, &att_out[0][0], att_config::heads * HD);
    } else {
        fprintf(stderr, "unknown op %s\n", op);
        return 2;
    }
    fclose(in);
    return fclose(out) == 0 ? 0 : 1;
}
