/* hybrid_kernel.h with AVX-512: 16 rows per tile. */
#if defined(__x86_64__)
#include <immintrin.h>
#pragma GCC target("avx2,fma,avx512f,avx512dq,avx512vl,avx512bw")
#define VW 16
#define PB 3
#define NB 8
#define NB1 16
#define RCP_ESTIMATE(x) (V) _mm512_rcp14_ps((__m512)(x))
#define MAX_PS(a, b) _mm512_max_ps((__m512)(a), (__m512)(b))
#define MIN_PS(a, b) _mm512_min_ps((__m512)(a), (__m512)(b))
#define ROUND_PS(x) _mm512_roundscale_ps((__m512)(x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define SCALE_PS(y, n) _mm512_scalef_ps((__m512)(y), (__m512)(n))
#define ENTRY iids_hybrid_forward_avx512
#include "hybrid_kernel.h"
#endif
