/* The hybrid detector's forward pass on CPUs: public types and entry points.
 *
 * One forward pass of a trained HybridIDS (batch norms already folded into the
 * convolutions) over many rows, vectorised across rows: a tile of VW rows (the SIMD
 * width: 16 with AVX-512, 8 with AVX2, 4 otherwise) goes through the whole network
 * with every activation stored as [position][channel][row of the tile], so each
 * multiply-add of every layer works on VW rows at once and a tile's activations stay
 * in the core's caches from the first convolution to the logits.
 *
 * Parameters arrive as one float array, layer after layer, each weight matrix stored
 * input-major, [K][N] (K inputs, N outputs), so a row of it is N consecutive outputs.
 * The order (iids/native.py packs it):
 *
 *   stem convolution    W[k][C], b[C]                      (one input channel)
 *   each residual block conv1 W[k*C][C], b[C]; conv2 W[k*C][C], b[C];
 *                       skip W[C][C], b[C] when its stride is not 1
 *                       (convolution rows are tap-major: row tap * C + c_in)
 *   each GRU layer      W_ih[K][6H], b_ih[6H] (forward r, z, n | backward r, z, n);
 *                       W_hh[H][3H], b_hh[3H] forward; the same backward
 *   attention           W_in[W][3W], b_in[3W] (q scaled by 1/sqrt(W / heads)); W_out[W][W], b_out[W]
 *   layer norm          gamma[W], beta[W]
 *   classifier          W1[2W][W], b1[W]; W2[W][classes], b2[classes]
 *
 * with C channels, k the kernel width, H the GRU hidden size and W = 2H.
 */
#ifndef IIDS_HYBRID_H
#define IIDS_HYBRID_H

#include <stdint.h>

typedef struct {
    int32_t num_features;
    int32_t num_classes;
    int32_t channels;
    int32_t kernel_size;
    int32_t num_blocks;
    int32_t gru_hidden;
    int32_t gru_layers;
    int32_t num_heads;
    const int32_t *strides; /* num_blocks values, each >= 1 */
    float norm_eps;
    const float *params;
    int64_t num_params;
} iids_hybrid_net;

/* Stages timed by iids_hybrid_forward when asked (nanoseconds, summed over tiles). */
enum { IIDS_STAGE_CONV, IIDS_STAGE_GRU, IIDS_STAGE_ATTENTION, IIDS_STAGE_HEAD, IIDS_NUM_STAGES };

/* Return codes. */
enum { IIDS_OK = 0, IIDS_BAD_NET = 1, IIDS_NO_MEMORY = 2 };

/* Floats the parameter array of `net` must hold (net->params is not read). */
int64_t iids_hybrid_num_params(const iids_hybrid_net *net);

/* Logits of `rows` rows of features.
 *
 * x: float32 (rows, num_features), row-major. logits: float32 (rows, num_classes),
 * row-major, written. stage_ns: NULL, or IIDS_NUM_STAGES counters the time of each
 * stage is added to. Safe to call from several threads at once on the same net.
 */
int iids_hybrid_forward(const iids_hybrid_net *net, const float *x, int64_t rows,
                        float *logits, int64_t *stage_ns);

/* The instruction set the forward pass runs with: "avx512", "avx2" or "baseline". */
const char *iids_hybrid_isa(void);

/* Run with the instruction set `name` ("avx512", "avx2", "baseline") from now on.
 * Returns 0, or -1 where this CPU lacks it (nothing changes then). For comparing the
 * instruction sets in tests and benchmarks; calls already running are not affected. */
int iids_hybrid_select_isa(const char *name);

/* Rows per tile of that instruction set. */
int iids_hybrid_tile_rows(void);

#endif
