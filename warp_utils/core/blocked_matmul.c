/* y = x W^T in float32 for a few rows of x (a decoding step's batch), with a fixed order of sums.

   Every output y[m][n] is summed over k in blocks of `block` products: each block is one chain of
   fused multiply-adds from zero, k in order; the blocks are added in order. This is the order of
   MKL's float32 matmul on this course's CPUs (blocks of 192), the one transformers' `generate`
   uses, so the logits agree bit for bit; and it does not depend on the vector width, so the AVX2
   and AVX-512 kernels below agree bit for bit with each other.

   Layouts (blocked_matmul.py makes them):
     xt      K x Mp   x transposed, Mp a multiple of 16 (rows beyond M are zeros)
     packed  N/16 panels of K x 16: packed[p][k][j] = W[16 p + j][k]   (N a multiple of 16)
     y       Mp x N
   One thread streams whole panels; the weights are read once per call, ahead by `AHEAD` floats. */

#include <immintrin.h>

#define AHEAD 1024 /* floats: 4 KiB, 64 cache lines ahead in the panel being read */

__attribute__((target("avx512f")))
static void kernel_avx512(const float *xt, long Mp, long K, const float *packed, long N, float *y,
                          long block, int threads) {
    long panels = N / 16;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long p = 0; p < panels; ++p) {
        const float *w = packed + p * K * 16;
        for (long b0 = 0; b0 < K; b0 += block) {
            long b1 = b0 + block < K ? b0 + block : K;
            for (long m0 = 0; m0 < Mp; m0 += 16) { /* 16 rows x 16 columns in 16 registers */
                __m512 acc[16];
                for (int r = 0; r < 16; ++r) acc[r] = _mm512_setzero_ps();
                for (long k = b0; k < b1; ++k) {
                    _mm_prefetch((const char *)(w + k * 16 + AHEAD), _MM_HINT_T0);
                    __m512 wk = _mm512_loadu_ps(w + k * 16);
                    const float *xk = xt + k * Mp + m0;
#pragma GCC unroll 16
                    for (int r = 0; r < 16; ++r) acc[r] = _mm512_fmadd_ps(_mm512_set1_ps(xk[r]), wk, acc[r]);
                }
                float *out = y + m0 * N + p * 16;
#pragma GCC unroll 16
                for (int r = 0; r < 16; ++r) /* the first block writes, the next ones add in order */
                    _mm512_storeu_ps(out + r * N, b0 ? _mm512_add_ps(_mm512_loadu_ps(out + r * N), acc[r]) : acc[r]);
            }
        }
    }
}

__attribute__((target("avx2,fma")))
static void kernel_avx2(const float *xt, long Mp, long K, const float *packed, long N, float *y,
                        long block, int threads) {
    long panels = N / 16;
#pragma omp parallel for schedule(static) num_threads(threads)
    for (long p = 0; p < panels; ++p) {
        const float *w = packed + p * K * 16;
        for (long b0 = 0; b0 < K; b0 += block) {
            long b1 = b0 + block < K ? b0 + block : K;
            for (long m0 = 0; m0 < Mp; m0 += 4) { /* 4 rows x 16 columns in 8 registers */
                __m256 acc[4][2];
                for (int r = 0; r < 4; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
                for (long k = b0; k < b1; ++k) {
                    _mm_prefetch((const char *)(w + k * 16 + AHEAD), _MM_HINT_T0);
                    __m256 lo = _mm256_loadu_ps(w + k * 16), hi = _mm256_loadu_ps(w + k * 16 + 8);
                    const float *xk = xt + k * Mp + m0;
#pragma GCC unroll 4
                    for (int r = 0; r < 4; ++r) {
                        __m256 v = _mm256_broadcast_ss(xk + r);
                        acc[r][0] = _mm256_fmadd_ps(v, lo, acc[r][0]);
                        acc[r][1] = _mm256_fmadd_ps(v, hi, acc[r][1]);
                    }
                }
                float *out = y + m0 * N + p * 16;
#pragma GCC unroll 4
                for (int r = 0; r < 4; ++r) {
                    __m256 lo = acc[r][0], hi = acc[r][1];
                    if (b0) {
                        lo = _mm256_add_ps(_mm256_loadu_ps(out + r * N), lo);
                        hi = _mm256_add_ps(_mm256_loadu_ps(out + r * N + 8), hi);
                    }
                    _mm256_storeu_ps(out + r * N, lo);
                    _mm256_storeu_ps(out + r * N + 8, hi);
                }
            }
        }
    }
}

/* The widest kernel this CPU runs: 512 (AVX-512), 256 (AVX2 with FMA), or 0 (neither). */
int widest(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return 512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 256;
    return 0;
}

/* Returns 0, or -1 when this CPU has no kernel of that `width` (512, 256). */
int blocked_matmul(const float *xt, long Mp, long K, const float *packed, long N, float *y,
                   long block, int threads, int width) {
    if (width > widest()) return -1;
    if (width == 512) kernel_avx512(xt, Mp, K, packed, N, y, block, threads);
    else if (width == 256) kernel_avx2(xt, Mp, K, packed, N, y, block, threads);
    else return -1;
    return 0;
}
