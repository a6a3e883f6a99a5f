/* hybrid_kernel.h for any CPU the compiler targets by default (SSE2 on x86-64, NEON
 * on 64-bit ARM): 4 rows per tile. */
#define VW 4
#define PB 2
#define NB 4
#define NB1 8
#define ENTRY iids_hybrid_forward_baseline
#include "hybrid_kernel.h"
