/* Off-by-one ("sink") softmax attention for bf16 on x86 CPUs with AVX512-BF16, inference only.

   out[b, h, i] = sum_j p_ij v[b, h / n_rep, j],  p_ij = exp(s_ij) / (1 + sum_j' exp(s_ij')),
   s_ij = scale * q[b, h, i] . k[b, h / n_rep, j]   (keys with key_mask 0 left out)

   Why: PyTorch's CPU flash kernel runs bf16 at about its fp32 speed on CPUs without AMX, while
   the bf16 dot-product instruction (VDPBF16PS: 16 lanes x 2 products per instruction, fp32
   accumulation) doubles the arithmetic rate. This is a flash-attention forward built on it:
   blocks of 64 queries x 128 keys, the scores in fp32 in a cache-resident buffer, an online
   softmax, and the sink folded into the running statistics (its logit is 0: the running max
   starts at 0 and the running sum at 1, its value row is zero).

   Layouts (all contiguous): q, out [B, H, S, D]; k, v [B, HK, S, D]; key_mask [B, S] (1 = attend)
   or NULL. D must be a multiple of 64. bf16 is passed as uint16_t.
   Compiled and loaded by sumi/kernels/__init__.py (gcc -O3 -mavx512f -mavx512bf16 -fopenmp). */

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define QB 64   /* queries per block */
#define KB 128  /* keys per block */

/* exp(x) for x <= 0, x = -inf allowed: 2^n * 2^f with n = round(x log2 e), |f| <= 1/2 and a
   degree-6 Taylor polynomial for 2^f (relative error < 3e-7, below fp32 rounding of the sum). */
static inline __m512 exp_nonpos(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-100.0f);
    __m512 t = _mm512_mul_ps(_mm512_max_ps(x, lo), _mm512_set1_ps(1.4426950408889634f));
    __m512 n = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 f = _mm512_mul_ps(_mm512_sub_ps(t, n), _mm512_set1_ps(0.6931471805599453f)); /* f ln 2 */
    __m512 p = _mm512_set1_ps(1.0f / 720.0f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    /* masked scores (-inf) become exactly 0 */
    __mmask16 finite = _mm512_cmp_ps_mask(x, lo, _CMP_GT_OQ);
    return _mm512_maskz_mov_ps(finite, _mm512_scalef_ps(p, n));
}

static inline __m512bh as_bh(__m512i x) { return (__m512bh)x; }

/* Pack one KV head: kp[D/2][Sp][2] (pairs along D, for q.k) and vp[Sp/2][D][2] (pairs along the
   keys, for p.v); keys S..Sp-1 are zero. */
static void pack_kv(const uint16_t *k, const uint16_t *v, uint16_t *kp, uint16_t *vp, int S, int Sp, int D) {
    memset(kp, 0, sizeof(uint16_t) * (size_t)Sp * D);
    memset(vp, 0, sizeof(uint16_t) * (size_t)Sp * D);
    for (int j = 0; j < S; j++)
        for (int d = 0; d < D; d++) {
            kp[((size_t)(d / 2) * Sp + j) * 2 + (d & 1)] = k[(size_t)j * D + d];
            vp[((size_t)(j / 2) * D + d) * 2 + (j & 1)] = v[(size_t)j * D + d];
        }
}

/* Returns 0, or 1 when memory for the packed K/V or the per-thread buffers could not be had. */
int sink_attention_bf16(const uint16_t *q, const uint16_t *k, const uint16_t *v, const uint8_t *key_mask,
                        uint16_t *out, int B, int H, int HK, int S, int D, float scale, int nthreads) {
    const int Sp = (S + KB - 1) / KB * KB, n_rep = H / HK, nqb = (S + QB - 1) / QB;
    const size_t head = (size_t)S * D, packed = (size_t)Sp * D;
    int failed = 0;
    uint16_t *kp = aligned_alloc(64, sizeof(uint16_t) * packed * B * HK);
    uint16_t *vp = aligned_alloc(64, sizeof(uint16_t) * packed * B * HK);
    if (!kp || !vp) { free(kp); free(vp); return 1; }

#pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int bh = 0; bh < B * HK; bh++)
        pack_kv(k + bh * head, v + bh * head, kp + bh * packed, vp + bh * packed, S, Sp, D);

#pragma omp parallel num_threads(nthreads)
    {
        uint16_t *qbuf = aligned_alloc(64, sizeof(uint16_t) * QB * D);   /* the query block, zero-padded */
        float *sbuf = aligned_alloc(64, sizeof(float) * QB * KB);         /* scores of one key block */
        uint16_t *pbuf = aligned_alloc(64, sizeof(uint16_t) * QB * KB);  /* their exp, bf16 */
        float *obuf = aligned_alloc(64, sizeof(float) * QB * D);          /* running output */
        float m[QB], l[QB];
        const int ok = qbuf && sbuf && pbuf && obuf;
        if (!ok) {
#pragma omp atomic write
            failed = 1;
        }

#pragma omp for schedule(dynamic)
        for (int task = 0; task < B * H * nqb; task++) {
            if (!ok) continue;
            const int b = task / (H * nqb), h = (task / nqb) % H, i0 = (task % nqb) * QB;
            const int rows = S - i0 < QB ? S - i0 : QB;
            const size_t kvh = (size_t)b * HK + h / n_rep;
            const uint16_t *kph = kp + kvh * packed, *vph = vp + kvh * packed;
            const uint8_t *mask = key_mask ? key_mask + (size_t)b * S : NULL;
            memset(qbuf, 0, sizeof(uint16_t) * QB * D);
            memcpy(qbuf, q + ((size_t)b * H + h) * head + (size_t)i0 * D, sizeof(uint16_t) * rows * D);
            memset(obuf, 0, sizeof(float) * QB * D);
            for (int r = 0; r < QB; r++) { m[r] = 0.0f; l[r] = 1.0f; }  /* the sink: logit 0, value 0 */

            for (int j0 = 0; j0 < Sp; j0 += KB) {
                /* scores: 4 query rows x 64 keys per micro-tile, 16 accumulators */
                for (int r0 = 0; r0 < QB; r0 += 4)
                    for (int c0 = 0; c0 < KB; c0 += 64) {
                        __m512 acc[4][4];
                        for (int r = 0; r < 4; r++)
                            for (int c = 0; c < 4; c++) acc[r][c] = _mm512_setzero_ps();
                        for (int d2 = 0; d2 < D / 2; d2++) {
                            const uint16_t *kr = kph + ((size_t)d2 * Sp + j0 + c0) * 2;
                            __m512i kv0 = _mm512_loadu_si512(kr), kv1 = _mm512_loadu_si512(kr + 32),
                                    kv2 = _mm512_loadu_si512(kr + 64), kv3 = _mm512_loadu_si512(kr + 96);
                            for (int r = 0; r < 4; r++) {
                                __m512i qq = _mm512_set1_epi32(*(const int32_t *)(qbuf + (r0 + r) * D + 2 * d2));
                                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], as_bh(qq), as_bh(kv0));
                                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], as_bh(qq), as_bh(kv1));
                                acc[r][2] = _mm512_dpbf16_ps(acc[r][2], as_bh(qq), as_bh(kv2));
                                acc[r][3] = _mm512_dpbf16_ps(acc[r][3], as_bh(qq), as_bh(kv3));
                            }
                        }
                        for (int r = 0; r < 4; r++)
                            for (int c = 0; c < 4; c++)
                                _mm512_storeu_ps(sbuf + (r0 + r) * KB + c0 + 16 * c, acc[r][c]);
                    }
                /* online softmax over this key block; keys past S or masked out score -inf */
                __mmask16 keep[KB / 16];
                for (int c = 0; c < KB / 16; c++) {
                    keep[c] = 0;
                    for (int t = 0; t < 16; t++) {
                        const int j = j0 + 16 * c + t;
                        if (j < S && (!mask || mask[j])) keep[c] |= (__mmask16)(1u << t);
                    }
                }
                const __m512 vscale = _mm512_set1_ps(scale), ninf = _mm512_set1_ps(-INFINITY);
                for (int r = 0; r < QB; r++) {
                    float *s = sbuf + r * KB;
                    __m512 vmax = _mm512_set1_ps(m[r]);
                    for (int c = 0; c < KB / 16; c++) {
                        __m512 x = _mm512_mask_mul_ps(ninf, keep[c], _mm512_loadu_ps(s + 16 * c), vscale);
                        _mm512_storeu_ps(s + 16 * c, x);
                        vmax = _mm512_max_ps(vmax, x);
                    }
                    const float mx = _mm512_reduce_max_ps(vmax);
                    const float corr = expf(m[r] - mx);
                    const __m512 vmx = _mm512_set1_ps(mx);
                    __m512 sum = _mm512_setzero_ps();
                    for (int j = 0; j < KB; j += 16) {
                        __m512 p = exp_nonpos(_mm512_sub_ps(_mm512_loadu_ps(s + j), vmx));
                        sum = _mm512_add_ps(sum, p);
                        _mm256_storeu_si256((__m256i *)(pbuf + r * KB + j), (__m256i)_mm512_cvtneps_pbh(p));
                    }
                    l[r] = l[r] * corr + _mm512_reduce_add_ps(sum);
                    m[r] = mx;
                    if (corr != 1.0f) {
                        const __m512 vc = _mm512_set1_ps(corr);
                        for (int d = 0; d < D; d += 16)
                            _mm512_storeu_ps(obuf + r * D + d, _mm512_mul_ps(_mm512_loadu_ps(obuf + r * D + d), vc));
                    }
                }
                /* out += p . v: 4 query rows x 64 output columns per micro-tile */
                for (int r0 = 0; r0 < QB; r0 += 4)
                    for (int d0 = 0; d0 < D; d0 += 64) {
                        __m512 acc[4][4];
                        for (int r = 0; r < 4; r++)
                            for (int c = 0; c < 4; c++) acc[r][c] = _mm512_loadu_ps(obuf + (r0 + r) * D + d0 + 16 * c);
                        for (int j2 = 0; j2 < KB / 2; j2++) {
                            const uint16_t *vr = vph + ((size_t)(j0 / 2 + j2) * D + d0) * 2;
                            __m512i v0 = _mm512_loadu_si512(vr), v1 = _mm512_loadu_si512(vr + 32),
                                    v2 = _mm512_loadu_si512(vr + 64), v3 = _mm512_loadu_si512(vr + 96);
                            for (int r = 0; r < 4; r++) {
                                __m512i pp = _mm512_set1_epi32(*(const int32_t *)(pbuf + (r0 + r) * KB + 2 * j2));
                                acc[r][0] = _mm512_dpbf16_ps(acc[r][0], as_bh(pp), as_bh(v0));
                                acc[r][1] = _mm512_dpbf16_ps(acc[r][1], as_bh(pp), as_bh(v1));
                                acc[r][2] = _mm512_dpbf16_ps(acc[r][2], as_bh(pp), as_bh(v2));
                                acc[r][3] = _mm512_dpbf16_ps(acc[r][3], as_bh(pp), as_bh(v3));
                            }
                        }
                        for (int r = 0; r < 4; r++)
                            for (int c = 0; c < 4; c++) _mm512_storeu_ps(obuf + (r0 + r) * D + d0 + 16 * c, acc[r][c]);
                    }
            }
            /* normalise and write the valid rows */
            uint16_t *o = out + ((size_t)b * H + h) * head + (size_t)i0 * D;
            for (int r = 0; r < rows; r++) {
                const __m512 inv = _mm512_set1_ps(1.0f / l[r]);
                for (int d = 0; d < D; d += 16)
                    _mm256_storeu_si256((__m256i *)(o + (size_t)r * D + d),
                                        (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_loadu_ps(obuf + r * D + d), inv)));
            }
        }
        free(qbuf); free(sbuf); free(pbuf); free(obuf);
    }
    free(kp); free(vp);
    return failed;
}
