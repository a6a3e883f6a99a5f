/* The extension module iids._hybrid_cpu: hybrid.h's entry points, each instruction
 * set's forward pass, and the choice between them, made once when the library loads.
 * Python reaches the entry points through ctypes (iids/native.py), which releases the
 * GIL for the length of a call, so threads score row ranges in parallel. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <string.h>

#include "hybrid.h"

typedef int (*forward_fn)(const iids_hybrid_net *, const float *, int64_t, float *,
                          int64_t *);

int iids_hybrid_forward_baseline(const iids_hybrid_net *, const float *, int64_t,
                                 float *, int64_t *);
#if defined(__x86_64__)
int iids_hybrid_forward_avx2(const iids_hybrid_net *, const float *, int64_t, float *,
                             int64_t *);
int iids_hybrid_forward_avx512(const iids_hybrid_net *, const float *, int64_t,
                               float *, int64_t *);
#endif

static forward_fn chosen = iids_hybrid_forward_baseline;
static const char *chosen_isa = "baseline";
static int chosen_tile_rows = 4;

/* The widest instruction set this CPU has. */
__attribute__((constructor)) static void choose_isa(void) {
    if (iids_hybrid_select_isa("avx512") != 0) iids_hybrid_select_isa("avx2");
}

int64_t iids_hybrid_num_params(const iids_hybrid_net *net) {
    const int64_t C = net->channels, k = net->kernel_size, H = net->gru_hidden;
    const int64_t W = 2 * H, classes = net->num_classes;
    int64_t total = k * C + C;
    for (int i = 0; i < net->num_blocks; i++)
        total += 2 * (k * C * C + C) + (net->strides[i] != 1 ? C * C + C : 0);
    for (int l = 0, in = (int)C; l < net->gru_layers; l++, in = (int)W)
        total += in * 6 * H + 6 * H + 2 * (H * 3 * H + 3 * H);
    total += W * 3 * W + 3 * W + W * W + W;  /* attention */
    total += 2 * W;                          /* layer norm */
    total += 2 * W * W + W + W * classes + classes; /* classifier */
    return total;
}

static int valid(const iids_hybrid_net *net) {
    if (net->num_features < 1 || net->num_classes < 1 || net->channels < 1 ||
        net->kernel_size < 1 || net->kernel_size % 2 != 1 || net->num_blocks < 0 ||
        net->gru_hidden < 1 || net->gru_layers < 1 || net->num_heads < 1 ||
        (2 * net->gru_hidden) % net->num_heads != 0 || !net->params ||
        (net->num_blocks > 0 && !net->strides))
        return 0;
    for (int i = 0; i < net->num_blocks; i++)
        if (net->strides[i] < 1) return 0;
    return net->num_params == iids_hybrid_num_params(net);
}

int iids_hybrid_forward(const iids_hybrid_net *net, const float *x, int64_t rows,
                        float *logits, int64_t *stage_ns) {
    if (!valid(net) || rows < 0 || (rows > 0 && (!x || !logits))) return IIDS_BAD_NET;
    return chosen(net, x, rows, logits, stage_ns);
}

const char *iids_hybrid_isa(void) { return chosen_isa; }

int iids_hybrid_select_isa(const char *name) {
    forward_fn fn = 0;
    int tile_rows = 0;
    if (!strcmp(name, "baseline")) {
        fn = iids_hybrid_forward_baseline;
        tile_rows = 4;
    }
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!strcmp(name, "avx2") && __builtin_cpu_supports("avx2") &&
        __builtin_cpu_supports("fma")) {
        fn = iids_hybrid_forward_avx2;
        tile_rows = 8;
    }
    if (!strcmp(name, "avx512") && __builtin_cpu_supports("avx512f") &&
        __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
        __builtin_cpu_supports("avx512bw")) {
        fn = iids_hybrid_forward_avx512;
        tile_rows = 16;
    }
#endif
    if (!fn) return -1;
    chosen = fn;
    chosen_isa = tile_rows == 16 ? "avx512" : tile_rows == 8 ? "avx2" : "baseline";
    chosen_tile_rows = tile_rows;
    return 0;
}

int iids_hybrid_tile_rows(void) { return chosen_tile_rows; }

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    "_hybrid_cpu",
    "The hybrid detector's CPU forward pass; used through ctypes by iids.native.",
    -1,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC PyInit__hybrid_cpu(void) { return PyModule_Create(&module); }
