/* One population of Lava's bit-accurate CUBA LIF neurons (PyLifModelBitAcc) for every step of a
 * batch, in one call: the fused step of crsnn's CPU integer simulator (crsnn/sim/native.py).
 *
 * Everything is integer arithmetic, written after the rules of crsnn/loihi2.py (the one source of
 * truth; crsnn/sim/integer_sim.py is the readable NumPy reference, and the tests compare the three
 * on random networks). Per step t and batch element b, in Lava's order:
 *
 *   ff[i]  = shift(sum_j W[i, j] * src[b, t - 1, j], ff_exp)         (0 at t = 0)
 *            or, when a_ff is given, a_ff[b, t, i] (computed elsewhere, e.g. per-synapse delays)
 *   rec[i] = sum over delay groups g of shift(sum_{j in g, t - 1 - d_j >= 0}
 *                                             R[i, j] * s[b, t - 1 - d_j, j], rec_exp)
 *            (one group holding every neuron unless `grouped`: Lava floors each delay value's sum
 *            on its own when the exponent is negative)
 *   a      = ff + rec
 *   u      = wrap24(wrap32(trunc(u * (4096 - (du + 1)) / 4096) + (a << 6)))
 *   v      = clip(wrap32(trunc(v * (4096 - dv) / 4096) + u + bias), -(2^23 - 1), 2^23 - 1)
 *   s      = v > vth_scaled;  v = 0 where s
 *
 * shift(x, e) = x * 2^e for e >= 0, floor(x / 2^-e) for e < 0. Weights are stored column by
 * column (one column per presynaptic neuron): column j covers rows [lo[j], hi[j]) with its values
 * at vals[off[j] ...] (a conv kernel's band or a dense column; zeros inside the range are fine).
 *
 * Event-driven: only the columns of sources that spiked are added. The feedforward collects the
 * non-zero inputs of a step without branches, then adds their columns. A recurrent spike of
 * neuron j at step t is queued in a ring of arrival lists for step t + 1 + d_j; a step's list is
 * filled one emission step at a time, so its entries come in runs of equal delay, i.e. one run
 * per delay group, which is where a grouped sum is shifted and added.
 *
 * Sums are accumulated in int32 (twice the lanes of int64 per vector operation): exact because
 * every partial sum is bounded by max_i sum_j |W[i, j]| * max src, which the caller checks is
 * below 2^31 (a validated network guarantees it). State and shifted sums are int64.
 * ff_seconds (nullable) receives the wall time spent on the feedforward sums (benchmarks).
 *
 * Batch elements are independent: the caller may split the batch over threads (each call works
 * on rows [b0, b1) of the batch and touches nothing else). Returns 0, or -1 if out of memory.
 */
#define _POSIX_C_SOURCE 199309L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STATE_HALF (INT64_C(1) << 23)
#define V_MAX (STATE_HALF - 1)
#define DECAY_UNITY INT64_C(4096)

static inline int64_t wrap_int32(int64_t x) {
    uint64_t y = ((uint64_t)x + (UINT64_C(1) << 31)) & UINT64_C(0xffffffff);
    return (int64_t)y - (INT64_C(1) << 31);
}

static inline int64_t trunc_shift12(int64_t y) { /* sign(y) * (|y| >> 12) */
    return y >= 0 ? (y >> 12) : -((-y) >> 12);
}

static inline int64_t floor_shift_right(int64_t x, int sh) { /* floor(x / 2^sh), sh > 0 */
    return x >= 0 ? (x >> sh) : -(((-x) + (INT64_C(1) << sh) - 1) >> sh);
}

static inline int64_t apply_exp(int64_t x, int64_t e) {
    return e >= 0 ? x * (INT64_C(1) << e) : floor_shift_right(x, (int)(-e));
}

/* acc[lo..hi) += x * col[0 .. hi - lo) */
static inline void add_column(int32_t *restrict acc, const int32_t *restrict col, int64_t lo, int64_t hi,
                              int32_t x) {
    int32_t *restrict a = acc + lo;
    const int64_t len = hi - lo;
    if (x == 1) {
        for (int64_t k = 0; k < len; k++) a[k] += col[k];
    } else {
        for (int64_t k = 0; k < len; k++) a[k] += col[k] * x;
    }
}

/* The recurrent sum of one delay group, held in acc[lo, hi): shifted, added to a[]. */
static inline void flush_group(int64_t *restrict a, const int32_t *restrict acc, int64_t lo, int64_t hi,
                               int64_t e) {
    for (int64_t i = lo; i < hi; i++) a[i] += apply_exp(acc[i], e);
}

int crsnn_lif_layer(
    int64_t b0, int64_t b1, int64_t steps, int64_t n,
    /* feedforward, event-driven: src (batch, steps, n_in) int32, weights by source column */
    int64_t n_in, const int32_t *src, const int64_t *ff_lo, const int64_t *ff_hi, const int64_t *ff_off,
    const int32_t *ff_vals, int64_t ff_exp,
    /* or precomputed: a_ff (batch, steps, n) int64, already shifted (not << 6); NULL: use src */
    const int64_t *a_ff,
    /* recurrence (has_rec = 0: none): axonal delays (n,), weights by column, exponent */
    int64_t has_rec, int64_t grouped, const int64_t *delays, const int64_t *rec_lo, const int64_t *rec_hi,
    const int64_t *rec_off, const int32_t *rec_vals, int64_t rec_exp,
    /* neurons */
    int64_t du, int64_t dv, int64_t vth_scaled, const int64_t *bias,
    /* outputs: spikes (batch, steps, n) int32 0/1; voltages (batch, steps, n) int64 or NULL */
    int32_t *spikes, int64_t *v_out, double *ff_seconds)
{
    int64_t dmax = 0;
    for (int64_t j = 0; has_rec && j < n; j++)
        if (delays[j] > dmax) dmax = delays[j];
    const int64_t slots = dmax + 2; /* a spike at t arrives at most at t + 1 + dmax */
    const int64_t n_idx = n_in > n ? n_in : n;
    int64_t *buf = (int64_t *)malloc(sizeof(int64_t) * (size_t)(3 * n + n_idx));
    int32_t *acc = (int32_t *)malloc(sizeof(int32_t) * (size_t)n);
    int32_t *ring = (int32_t *)malloc(sizeof(int32_t) * (size_t)(has_rec ? slots * n : 1));
    int64_t *ring_len = (int64_t *)calloc((size_t)slots, sizeof(int64_t));
    if (!buf || !acc || !ring || !ring_len) {
        free(buf);
        free(acc);
        free(ring);
        free(ring_len);
        return -1;
    }
    int64_t *u = buf, *v = buf + n, *a = buf + 2 * n, *idx = buf + 3 * n;
    const int64_t cu = DECAY_UNITY - (du + 1), cv = DECAY_UNITY - dv;

    for (int64_t b = b0; b < b1; b++) {
        memset(u, 0, sizeof(int64_t) * (size_t)n);
        memset(v, 0, sizeof(int64_t) * (size_t)n);
        memset(ring_len, 0, sizeof(int64_t) * (size_t)slots);
        int32_t *s_b = spikes + b * steps * n;
        for (int64_t t = 0; t < steps; t++) {
            /* feedforward */
            struct timespec t0, t1;
            if (ff_seconds) clock_gettime(CLOCK_MONOTONIC, &t0);
            if (a_ff) {
                memcpy(a, a_ff + (b * steps + t) * n, sizeof(int64_t) * (size_t)n);
            } else {
                const int32_t *x = src + (b * steps + (t > 0 ? t - 1 : 0)) * n_in;
                int64_t m = 0; /* the step's non-zero inputs, collected without branches */
                for (int64_t j = 0; t > 0 && j < n_in; j++) {
                    idx[m] = j;
                    m += x[j] != 0;
                }
                memset(acc, 0, sizeof(int32_t) * (size_t)n);
                for (int64_t k = 0; k < m; k++) {
                    const int64_t j = idx[k];
                    add_column(acc, ff_vals + ff_off[j], ff_lo[j], ff_hi[j], x[j]);
                }
                for (int64_t i = 0; i < n; i++) a[i] = apply_exp(acc[i], ff_exp);
            }
            if (ff_seconds) {
                clock_gettime(CLOCK_MONOTONIC, &t1);
                *ff_seconds += (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
            }
            /* recurrence: the spikes arriving now, in runs of equal delay (one per delay group) */
            if (has_rec) {
                const int64_t slot = t % slots;
                const int32_t *arr = ring + slot * n;
                int64_t lo = 0, hi = 0, run_delay = -1; /* acc[lo, hi): the current group's sum */
                for (int64_t k = 0; k < ring_len[slot]; k++) {
                    const int64_t j = arr[k];
                    if (grouped && delays[j] != run_delay) { /* a new delay group starts */
                        flush_group(a, acc, lo, hi, rec_exp);
                        lo = hi = 0;
                        run_delay = delays[j];
                    }
                    const int64_t clo = rec_lo[j], chi = rec_hi[j];
                    if (hi <= lo) {
                        for (int64_t i = clo; i < chi; i++) acc[i] = 0;
                        lo = clo;
                        hi = chi;
                    } else { /* widen [lo, hi) to cover [clo, chi), clearing what is new (gaps too) */
                        for (int64_t i = clo; i < lo; i++) acc[i] = 0;
                        for (int64_t i = hi; i < chi; i++) acc[i] = 0;
                        if (clo < lo) lo = clo;
                        if (chi > hi) hi = chi;
                    }
                    add_column(acc, rec_vals + rec_off[j], clo, chi, 1);
                }
                flush_group(a, acc, lo, hi, rec_exp);
                ring_len[slot] = 0;
            }
            /* neurons */
            int32_t *s_t = s_b + t * n;
            int64_t *v_t = v_out ? v_out + (b * steps + t) * n : NULL;
            for (int64_t i = 0; i < n; i++) {
                int64_t uu = wrap_int32(trunc_shift12(u[i] * cu) + a[i] * 64);
                if (uu > STATE_HALF) uu -= 2 * STATE_HALF;
                if (uu <= -STATE_HALF) uu += 2 * STATE_HALF;
                int64_t vv = wrap_int32(trunc_shift12(v[i] * cv) + uu + bias[i]);
                if (vv > V_MAX) vv = V_MAX;
                if (vv < -V_MAX) vv = -V_MAX;
                const int fired = vv > vth_scaled;
                if (fired) vv = 0;
                u[i] = uu;
                v[i] = vv;
                s_t[i] = fired;
                if (v_t) v_t[i] = vv;
            }
            /* queue this step's spikes for their arrival at t + 1 + d_j */
            if (has_rec) {
                int64_t m = 0;
                for (int64_t j = 0; j < n; j++) {
                    idx[m] = j;
                    m += s_t[j];
                }
                for (int64_t k = 0; k < m; k++) {
                    const int64_t j = idx[k];
                    const int64_t slot = (t + 1 + delays[j]) % slots;
                    ring[slot * n + ring_len[slot]++] = (int32_t)j;
                }
            }
        }
    }
    free(buf);
    free(acc);
    free(ring);
    free(ring_len);
    return 0;
}
