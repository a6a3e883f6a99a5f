/* hybrid_kernel.h with AVX2 and FMA: 8 rows per tile. */
#if defined(__x86_64__)
#include <immintrin.h>
#pragma GCC target("avx2,fma")
#define VW 8
#define PB 3
#define NB 4
#define NB1 8
#define RCP_ESTIMATE(x) (V) _mm256_rcp_ps((__m256)(x))
#define MAX_PS(a, b) _mm256_max_ps((__m256)(a), (__m256)(b))
#define MIN_PS(a, b) _mm256_min_ps((__m256)(a), (__m256)(b))
#define ENTRY iids_hybrid_forward_avx2
#include "hybrid_kernel.h"
#endif
