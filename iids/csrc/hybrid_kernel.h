/* The forward pass of hybrid.h for one instruction set.
 *
 * Included once per instruction set by hybrid_<isa>.c, which defines first:
 *   VW          floats per vector, which is also the rows per tile;
 *   PB, NB      register block of the matrix products: PB positions x NB outputs;
 *   NB1         outputs per block where there is a single position (GRU steps, head);
 *   ENTRY       the name of this instruction set's iids_hybrid_forward.
 * Everything else here is static, so each instruction set gets its own copy.
 *
 * An activation of L positions and C channels is L * C vectors, position-major; the
 * row of the tile is the vector lane. Convolution inputs carry `pad` zero positions
 * on each side, so a convolution's taps for one output position are one contiguous
 * run of k * C vectors and the convolution is a plain matrix product.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "hybrid.h"

typedef float V __attribute__((vector_size(VW * 4)));
typedef int32_t VI __attribute__((vector_size(VW * 4)));

#define INLINE static inline __attribute__((always_inline))
#define NBMAX (NB > NB1 ? NB : NB1)

INLINE V splat(float s) { return (V){0} + s; }

/* Lane-wise max and min: the instruction set's own where hybrid_<isa>.c names it
 * (a compare and a blend otherwise). */
INLINE V vmax(V a, V b) {
#ifdef MAX_PS
    return (V)MAX_PS(a, b);
#else
    VI m = a > b;
    return (V)((m & (VI)a) | (~m & (VI)b));
#endif
}

INLINE V vmin(V a, V b) {
#ifdef MIN_PS
    return (V)MIN_PS(a, b);
#else
    VI m = a < b;
    return (V)((m & (VI)a) | (~m & (VI)b));
#endif
}

/* exp(x), float precision over the whole float range (Cephes' expf polynomial):
 * x = n ln 2 + r, |r| <= ln 2 / 2, exp(r) by a degree-7 polynomial, 2^n in the exponent. */
INLINE V vexp(V x) {
    x = vmin(vmax(x, splat(-87.33654f)), splat(88.37626f));
#ifdef ROUND_PS
    V t = (V)ROUND_PS(x * 1.44269504088896341f);
#else
    V fx = x * 1.44269504088896341f + 0.5f;
    VI n = __builtin_convertvector(fx, VI); /* truncates toward zero */
    n += (VI)(__builtin_convertvector(n, V) > fx); /* -1 where that was a ceiling */
    V t = __builtin_convertvector(n, V);
#endif
    x = x - t * 0.693359375f;
    x = x - t * -2.12194440e-4f;
    V y = splat(1.9875691500e-4f);
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * (x * x) + x + 1.0f;
#ifdef SCALE_PS
    return (V)SCALE_PS(y, t);
#else
    return y * (V)((__builtin_convertvector(t, VI) + 127) << 23);
#endif
}

/* 1 / x: the instruction set's reciprocal estimate and one Newton step where it has
 * one (hybrid_<isa>.c defines RCP_ESTIMATE), which is several times faster than a
 * division and as exact for these uses (relative error below 2^-22). */
INLINE V vrcp(V x) {
#ifdef RCP_ESTIMATE
    V r = RCP_ESTIMATE(x);
    return r * (2.0f - x * r);
#else
    return 1.0f / x;
#endif
}

INLINE V vsigmoid(V x) { return vrcp(1.0f + vexp(-x)); }

INLINE V vtanh(V x) { return 1.0f - 2.0f * vrcp(1.0f + vexp(x + x)); }

/* One register block of a matrix product: pb positions x nb outputs.
 * out[i][j] = act(b[j] + sum_k in[i][k] W[k][j] + res[i][j]), W of row length N. */
INLINE void block(const int pb, const int nb, const V *in, int ld_in, int K,
                  const float *W, int N, const float *b, V *out, int ld_out,
                  const V *res, int ld_res, int relu) {
    V acc[PB][NBMAX];
    for (int i = 0; i < pb; i++)
        for (int j = 0; j < nb; j++) acc[i][j] = splat(b[j]);
    for (int k = 0; k < K; k++) {
        const float *w = W + (long)k * N;
        for (int i = 0; i < pb; i++) {
            const V x = in[(long)i * ld_in + k];
            for (int j = 0; j < nb; j++) acc[i][j] += x * w[j];
        }
    }
    for (int i = 0; i < pb; i++)
        for (int j = 0; j < nb; j++) {
            V v = acc[i][j];
            if (res) v += res[(long)i * ld_res + j];
            if (relu) v = vmax(v, splat(0.0f));
            out[(long)i * ld_out + j] = v;
        }
}

/* All N outputs of pb positions. */
INLINE void block_row(const int pb, const V *in, int ld_in, int K, const float *W,
                      int N, const float *b, V *out, int ld_out, const V *res,
                      int ld_res, int relu) {
    const int nb = pb == 1 ? NB1 : NB;
    int n = 0;
    for (; n + nb <= N; n += nb)
        block(pb, nb, in, ld_in, K, W + n, N, b + n, out + n, ld_out,
              res ? res + n : 0, ld_res, relu);
    for (; n + 4 <= N; n += 4)
        block(pb, 4, in, ld_in, K, W + n, N, b + n, out + n, ld_out,
              res ? res + n : 0, ld_res, relu);
    for (; n < N; n++)
        block(pb, 1, in, ld_in, K, W + n, N, b + n, out + n, ld_out,
              res ? res + n : 0, ld_res, relu);
}

/* out[p][n] = act(b[n] + sum_k in[p][k] W[k][n] + res[p][n]) for P positions.
 * Position p of `in` starts ld_in vectors after position p - 1, so overlapping runs
 * (a convolution's taps) need no copies. `res` may be `out`. */
static void matmul(const V *in, int ld_in, int P, int K, const float *W, const float *b,
                   int N, V *out, int ld_out, const V *res, int ld_res, int relu) {
    int p = 0;
    for (; p + PB <= P; p += PB)
        block_row(PB, in + (long)p * ld_in, ld_in, K, W, N, b, out + (long)p * ld_out,
                  ld_out, res ? res + (long)p * ld_res : 0, ld_res, relu);
    for (; p < P; p++)
        block_row(1, in + (long)p * ld_in, ld_in, K, W, N, b, out + (long)p * ld_out,
                  ld_out, res ? res + (long)p * ld_res : 0, ld_res, relu);
}

/* A convolution over `len` positions of c_in channels, `in` padded by k / 2 zero
 * positions on each side; writes (len - 1) / stride + 1 positions of N channels. */
static void conv(const V *in, int len, int c_in, int k, int stride, const float *W,
                 const float *b, int N, V *out, const V *res, int relu) {
    int out_len = (len - 1) / stride + 1;
    matmul(in, stride * c_in, out_len, k * c_in, W, b, N, out, N, res, N, relu);
}

/* Zero the `pad` positions after the first `len` of a padded buffer. */
static void zero_tail(V *buf, int pad, int len, int channels) {
    memset(buf + (long)(pad + len) * channels, 0, sizeof(V) * pad * channels);
}

/* One GRU layer, both directions: x (L, K) to out (L, 2H), forward then backward. */
static void gru_layer(const V *x, int L, int K, int H, const float **cursor, V *gates_in,
                      V *gates_h, V *out) {
    const float *w_ih = *cursor, *b_ih = w_ih + (long)K * 6 * H;
    const float *w_hh[2], *b_hh[2];
    w_hh[0] = b_ih + 6 * H;
    b_hh[0] = w_hh[0] + (long)H * 3 * H;
    w_hh[1] = b_hh[0] + 3 * H;
    b_hh[1] = w_hh[1] + (long)H * 3 * H;
    *cursor = b_hh[1] + 3 * H;

    /* Input gates of every position and both directions at once. */
    matmul(x, K, L, K, w_ih, b_ih, 6 * H, gates_in, 6 * H, 0, 0, 0);
    for (int d = 0; d < 2; d++) {
        const V *prev = 0;
        for (int t = 0; t < L; t++) {
            int pos = d ? L - 1 - t : t;
            const V *gi = gates_in + (long)pos * 6 * H + d * 3 * H;
            V *h = out + (long)pos * 2 * H + d * H;
            if (prev)
                matmul(prev, H, 1, H, w_hh[d], b_hh[d], 3 * H, gates_h, 3 * H, 0, 0, 0);
            else
                for (int j = 0; j < 3 * H; j++) gates_h[j] = splat(b_hh[d][j]);
            for (int j = 0; j < H; j++) {
                V r = vsigmoid(gi[j] + gates_h[j]);
                V z = vsigmoid(gi[H + j] + gates_h[H + j]);
                V n = vtanh(gi[2 * H + j] + r * gates_h[2 * H + j]);
                V before = prev ? prev[j] : splat(0.0f);
                h[j] = n + z * (before - n);
            }
            prev = h;
        }
    }
}

/* Multi-head self-attention over L positions of width W, q already scaled:
 * qkv (L, 3W) to out (L, W), before the output projection. */
static void attend(const V *qkv, int L, int W, int heads, V *scores, V *out) {
    int D = W / heads;
    for (int i = 0; i < L; i++)
        for (int h = 0; h < heads; h++) {
            const V *q = qkv + (long)i * 3 * W + h * D;
            V top = splat(-INFINITY);
            for (int j = 0; j < L; j++) {
                const V *k = qkv + (long)j * 3 * W + W + h * D;
                V s = q[0] * k[0];
                for (int d = 1; d < D; d++) s += q[d] * k[d];
                scores[j] = s;
                top = vmax(top, s);
            }
            V sum = splat(0.0f);
            for (int j = 0; j < L; j++) {
                scores[j] = vexp(scores[j] - top);
                sum += scores[j];
            }
            V inv = 1.0f / sum;
            V *o = out + (long)i * W + h * D;
            for (int d = 0; d < D; d++) {
                V acc = splat(0.0f);
                for (int j = 0; j < L; j++) acc += scores[j] * qkv[(long)j * 3 * W + 2 * W + h * D + d];
                o[d] = acc * inv;
            }
        }
}

/* Layer norm over the W channels of each of L positions, in place. */
static void layer_norm(V *x, int L, int W, const float *gamma, const float *beta,
                       float eps) {
    for (int i = 0; i < L; i++) {
        V *row = x + (long)i * W;
        V mean = splat(0.0f), var = splat(0.0f);
        for (int c = 0; c < W; c++) mean += row[c];
        mean *= 1.0f / W;
        for (int c = 0; c < W; c++) {
            V dev = row[c] - mean;
            var += dev * dev;
        }
        var *= 1.0f / W;
        V inv;
        for (int lane = 0; lane < VW; lane++) inv[lane] = 1.0f / sqrtf(var[lane] + eps);
        for (int c = 0; c < W; c++) row[c] = (row[c] - mean) * inv * gamma[c] + beta[c];
    }
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Add the time since *since to stage `stage` and restart the clock (when timing). */
static void lap(int64_t *stage_ns, int stage, int64_t *since) {
    if (!stage_ns) return;
    int64_t now = now_ns();
    stage_ns[stage] += now - *since;
    *since = now;
}

int ENTRY(const iids_hybrid_net *net, const float *x, int64_t rows, float *logits,
          int64_t *stage_ns) {
    const int F = net->num_features, classes = net->num_classes, C = net->channels;
    const int k = net->kernel_size, pad = k / 2, H = net->gru_hidden, W = 2 * H;

    /* Sequence length after the convolutions. */
    int L = F;
    for (int i = 0; i < net->num_blocks; i++) L = (L - 1) / net->strides[i] + 1;

    /* Scratch, in vectors. */
    const long seq = (long)(F + 2 * pad) * C;
    const long sizes[] = {
        F + 2 * pad,                /* features, one channel */
        seq, seq, seq,              /* convolution buffers */
        (long)L * 6 * H, 3L * H,    /* GRU input gates, hidden gates */
        (long)L * W, (long)L * W,   /* GRU layer outputs (ping-pong) */
        (long)L * 3 * W, (long)L * W, L, /* q, k, v; attention output; scores */
        2L * W, W, classes,         /* pooled, hidden, logits */
    };
    enum { N_BUF = sizeof(sizes) / sizeof(sizes[0]) };
    long total = 0;
    for (int i = 0; i < N_BUF; i++) total += sizes[i];
    V *scratch = aligned_alloc(sizeof(V), sizeof(V) * total);
    if (!scratch) return IIDS_NO_MEMORY;
    memset(scratch, 0, sizeof(V) * total);
    V *buf[N_BUF];
    buf[0] = scratch;
    for (int i = 1; i < N_BUF; i++) buf[i] = buf[i - 1] + sizes[i - 1];
    V *feat = buf[0], *gates_in = buf[4], *gates_h = buf[5];
    V *qkv = buf[8], *att = buf[9], *scores = buf[10];
    V *pooled = buf[11], *hidden = buf[12], *out = buf[13];

    for (int64_t row0 = 0; row0 < rows; row0 += VW) {
        int n_rows = rows - row0 < VW ? (int)(rows - row0) : VW;
        int64_t t0 = stage_ns ? now_ns() : 0;

        /* Features of the tile: one position per feature, one channel. */
        for (int f = 0; f < F; f++) {
            V v = splat(0.0f);
            for (int r = 0; r < n_rows; r++) v[r] = x[(row0 + r) * F + f];
            feat[pad + f] = v;
        }

        /* Stem and residual blocks. */
        const float *w = net->params;
        V *cur = buf[1], *tmp = buf[2], *nxt = buf[3];
        int len = F;
        conv(feat, F, 1, k, 1, w, w + (long)k * C, C, cur + pad * C, 0, 1);
        w += (long)k * C + C;
        zero_tail(cur, pad, len, C);
        for (int i = 0; i < net->num_blocks; i++) {
            int stride = net->strides[i], out_len = (len - 1) / stride + 1;
            const float *w1 = w, *b1 = w1 + (long)k * C * C;
            const float *w2 = b1 + C, *b2 = w2 + (long)k * C * C;
            w = b2 + C;
            conv(cur, len, C, k, stride, w1, b1, C, tmp + pad * C, 0, 1);
            zero_tail(tmp, pad, out_len, C);
            const V *skip = cur + pad * C;
            if (stride != 1) {
                matmul(cur + pad * C, stride * C, out_len, C, w, w + (long)C * C, C,
                       nxt + pad * C, C, 0, 0, 0);
                w += (long)C * C + C;
                skip = nxt + pad * C;
            }
            conv(tmp, out_len, C, k, 1, w2, b2, C, nxt + pad * C, skip, 1);
            zero_tail(nxt, pad, out_len, C);
            V *done = cur;
            cur = nxt;
            nxt = done;
            len = out_len;
        }
        lap(stage_ns, IIDS_STAGE_CONV, &t0);

        /* Bidirectional GRU layers. */
        const V *seq_in = cur + pad * C;
        int width = C;
        V *layer_out = buf[6];
        for (int l = 0; l < net->gru_layers; l++) {
            layer_out = buf[6 + (l & 1)];
            gru_layer(seq_in, L, width, H, &w, gates_in, gates_h, layer_out);
            seq_in = layer_out;
            width = W;
        }
        lap(stage_ns, IIDS_STAGE_GRU, &t0);

        /* Self-attention, residual and layer norm, in place on the GRU states. */
        V *states = layer_out;
        const float *w_in = w, *b_in = w_in + (long)W * 3 * W;
        const float *w_out = b_in + 3 * W, *b_out = w_out + (long)W * W;
        const float *gamma = b_out + W, *beta = gamma + W;
        w = beta + W;
        matmul(states, W, L, W, w_in, b_in, 3 * W, qkv, 3 * W, 0, 0, 0);
        attend(qkv, L, W, net->num_heads, scores, att);
        matmul(att, W, L, W, w_out, b_out, W, states, W, states, W, 0);
        layer_norm(states, L, W, gamma, beta, net->norm_eps);
        lap(stage_ns, IIDS_STAGE_ATTENTION, &t0);

        /* Mean and max over positions, then the classifier. */
        for (int c = 0; c < W; c++) {
            V sum = states[c], top = states[c];
            for (int i = 1; i < L; i++) {
                sum += states[(long)i * W + c];
                top = vmax(top, states[(long)i * W + c]);
            }
            pooled[c] = sum * (1.0f / L);
            pooled[W + c] = top;
        }
        const float *w1 = w, *b1 = w1 + (long)2 * W * W;
        const float *w2 = b1 + W, *b2 = w2 + (long)W * classes;
        matmul(pooled, 2 * W, 1, 2 * W, w1, b1, W, hidden, W, 0, 0, 1);
        matmul(hidden, W, 1, W, w2, b2, classes, out, classes, 0, 0, 0);
        for (int r = 0; r < n_rows; r++)
            for (int c = 0; c < classes; c++) logits[(row0 + r) * classes + c] = out[c][r];
        lap(stage_ns, IIDS_STAGE_HEAD, &t0);
    }
    free(scratch);
    return IIDS_OK;
}
