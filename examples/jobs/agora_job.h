/*
 * agora_job.h - tiny shared helpers for the Agora sample jobs.
 *
 * The same sources build two ways (see build.sh):
 *   - as WASI preview-1 command modules (clang --target=wasm32-wasi), where
 *     the executor mounts inputs read-only at /input and a writable /output;
 *   - as native executables (for the executor's metering-overhead benchmark),
 *     where /input and /output are replaced by $AGORA_INPUT_DIR and
 *     $AGORA_OUTPUT_DIR (defaults: /input and /output).
 *
 * It also carries the few pieces of floating-point math the jobs need
 * (exp, log, tanh) written with +, -, *, / and exact scaling only, so the
 * native and the WASM builds compute bit-identical results: they do not
 * depend on glibc's or wasi-libc's libm, which differ in the last bit.
 * sqrt is IEEE correctly rounded on both targets, so __builtin_sqrt is used.
 *
 * Exit codes used by every job: 0 success, 1 runtime error (I/O, bad input
 * data), 2 bad command-line arguments (a usage line goes to stderr).
 */
#ifndef AGORA_JOB_H
#define AGORA_JOB_H

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JOB_EXIT_OK 0
#define JOB_EXIT_ERROR 1
#define JOB_EXIT_USAGE 2

/* ---------------------------------------------------------------- paths */

static inline const char *job_dir_(const char *env_name, const char *fallback) {
#ifdef __wasi__
    (void)env_name; /* inside the sandbox the directories are fixed */
    return fallback;
#else
    const char *v = getenv(env_name);
    return (v != NULL && v[0] != '\0') ? v : fallback;
#endif
}

/* A file name given by the buyer must name a file directly inside the
 * directory: no separators, no "." or "..", not empty. */
static inline int job_name_ok(const char *name) {
    if (name == NULL || name[0] == '\0') return 0;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return 0;
    return strchr(name, '/') == NULL;
}

static inline int job_join_(char *buf, size_t cap, const char *dir, const char *name) {
    if (!job_name_ok(name)) return -1;
    int n = snprintf(buf, cap, "%s/%s", dir, name);
    return (n < 0 || (size_t)n >= cap) ? -1 : 0;
}

/* Path of input file NAME: "/input/NAME" in WASM. Returns 0, or -1 when the
 * name is not a plain file name or the path does not fit. */
static inline int job_input_path(char *buf, size_t cap, const char *name) {
    return job_join_(buf, cap, job_dir_("AGORA_INPUT_DIR", "/input"), name);
}

/* Path of output file NAME: "/output/NAME" in WASM. */
static inline int job_output_path(char *buf, size_t cap, const char *name) {
    return job_join_(buf, cap, job_dir_("AGORA_OUTPUT_DIR", "/output"), name);
}

/* --------------------------------------------------------- diagnostics */

static inline void job_fail(const char *job, const char *what, const char *path) {
    fprintf(stderr, "%s: %s %s: %s\n", job, what, path, strerror(errno));
}

/* Flush stdout at the end of main; a failed write is an error, not success. */
static inline int job_finish(const char *job) {
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "%s: writing stdout failed\n", job);
        return JOB_EXIT_ERROR;
    }
    return JOB_EXIT_OK;
}

/* ----------------------------------------------------- argument parsing */

/* Strict unsigned decimal (or 0x hex) parse: the whole string, no sign, no
 * spaces, within [lo, hi]. Returns 0 on success, -1 otherwise. */
static inline int job_parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out) {
    if (s == NULL || s[0] == '\0') return -1;
    unsigned base = 10;
    if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        s += 2;
        if (s[0] == '\0') return -1;
    }
    uint64_t v = 0;
    for (; *s != '\0'; s++) {
        unsigned d;
        char c = *s;
        if (c >= '0' && c <= '9') d = (unsigned)(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f') d = (unsigned)(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F') d = (unsigned)(c - 'A' + 10);
        else return -1;
        if (v > (UINT64_MAX - d) / base) return -1; /* overflow */
        v = v * base + d;
    }
    if (v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

/* --------------------------------------------------------------- PRNG */

/* SplitMix64 (Steele, Lea, Flood 2014): used both as a seed mixer and as a
 * small, fast generator. Integer-only, so identical on every target. */
static inline uint64_t job_splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t job_mix64(uint64_t x) {
    uint64_t s = x;
    return job_splitmix64(&s);
}

/* Uniform double in [0, 1) from the top 53 bits. */
static inline double job_u01(uint64_t bits) {
    return (double)(bits >> 11) * (1.0 / 9007199254740992.0);
}

/* FNV-1a 64 over bytes: a checksum printed in summaries (not cryptography). */
static inline uint64_t job_fnv1a64(uint64_t h, const void *data, size_t len) {
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}
#define JOB_FNV_OFFSET 0xcbf29ce484222325ULL

/* ----------------------------------------------------------------- math */

/* Multiply by 2^k exactly (k within the normal exponent range). */
static inline double job_pow2i_(int k) {
    union { double d; uint64_t u; } v;
    v.u = (uint64_t)(k + 1023) << 52;
    return v.d;
}

/* exp(x), relative error ~1e-16. Range reduction x = k*ln2 + r, |r| <= ln2/2,
 * then a degree-13 Taylor polynomial in Horner form. */
static inline double job_exp(double x) {
    if (x != x) return x;
    if (x > 709.0) return 1.0 / 0.0;
    if (x < -745.0) return 0.0;
    const double ln2_hi = 6.93147180369123816490e-01; /* exact in 32 bits */
    const double ln2_lo = 1.90821492927058770002e-10;
    const double log2e = 1.44269504088896338700e+00;
    double t = x * log2e;
    int k = (int)(t < 0 ? t - 0.5 : t + 0.5);
    double r = (x - (double)k * ln2_hi) - (double)k * ln2_lo;
    double p = 1.0 / 6227020800.0;          /* 1/13! */
    p = p * r + 1.0 / 479001600.0;          /* 1/12! */
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    /* scale in two steps so that k near the ends of the range stays finite */
    if (k > 1000) return p * job_pow2i_(1000) * job_pow2i_(k - 1000);
    if (k < -1000) return p * job_pow2i_(-1000) * job_pow2i_(k + 1000);
    return p * job_pow2i_(k);
}

/* Natural log for x > 0 (normal or subnormal); NaN for x < 0, -inf at 0.
 * x = m * 2^e with m in [sqrt(1/2), sqrt(2)); log m = 2 atanh(f),
 * f = (m-1)/(m+1), |f| <= 0.1716, series to f^25. */
static inline double job_log(double x) {
    if (x != x || x < 0.0) return 0.0 / 0.0;
    if (x == 0.0) return -1.0 / 0.0;
    if (x == 1.0 / 0.0) return x;
    union { double d; uint64_t u; } v;
    int e = 0;
    v.d = x;
    if ((v.u >> 52) == 0) { /* subnormal: scale up first */
        v.d *= 18014398509481984.0; /* 2^54 */
        e = -54;
    }
    e += (int)((v.u >> 52) & 0x7ff) - 1023;
    v.u = (v.u & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL; /* m in [1,2) */
    double m = v.d;
    if (m > 1.4142135623730951) {
        m *= 0.5;
        e += 1;
    }
    double f = (m - 1.0) / (m + 1.0);
    double f2 = f * f;
    double s = 1.0 / 25.0;
    for (int n = 23; n >= 1; n -= 2) s = s * f2 + 1.0 / (double)n;
    const double ln2 = 6.93147180559945286227e-01;
    return 2.0 * f * s + (double)e * ln2;
}

/* tanh via exp(-2|x|); saturates to +-1 for |x| > 20. */
static inline double job_tanh(double x) {
    double a = x < 0 ? -x : x;
    if (a > 20.0) return x < 0 ? -1.0 : 1.0;
    double t = job_exp(-2.0 * a);
    double y = (1.0 - t) / (1.0 + t);
    return x < 0 ? -y : y;
}

#endif /* AGORA_JOB_H */
