/* hybrid_kernel.h with AVX-512: 16 rows per tile. */
#if defined(__x86_64__)
#include <immintrin.h>
#pragma GCC target("avx2,fma,avx512f,avx512dq,avx512vl,avx512bw")
#define VW 16
#define PB 3
#define NB 8
#define NB1 16
#define RCP_ESTIMATE(x) (V) _mm512_rcp14_ps((__m512)(x))
#define ENTRY iids_hybrid_forward_avx512
#include "hybrid_kernel.h"
#endif
