/*
 * hashchain - pure CPU burn: a chain of N SipHash-2-4 evaluations.
 *
 *   hashchain N [SEED]      (N: 0..10^12; SEED default 0)
 *
 * h_0 = SEED, h_{i+1} = SipHash-2-4(key, h_i as 8 little-endian bytes), with
 * the 128-bit key derived from SEED. Prints h_N. Integer-only, so every
 * target computes the same value; the work is exactly N hash evaluations,
 * which makes fuel per iteration easy to read off.
 *
 * This is a workload, not cryptography: the chain proves nothing and the
 * key is public. SipHash is used only because it is a real, well-specified
 * hash (Aumasson & Bernstein 2012) with a known test vector (checked at
 * start-up).
 */
#include "agora_job.h"

#define MAX_N 1000000000000ULL /* 1e12 */

static inline uint64_t rotl(uint64_t x, int b) { return (x << b) | (x >> (64 - b)); }

#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1; v1 = rotl(v1, 13); v1 ^= v0; v0 = rotl(v0, 32);                                  \
        v2 += v3; v3 = rotl(v3, 16); v3 ^= v2;                                                     \
        v0 += v3; v3 = rotl(v3, 21); v3 ^= v0;                                                     \
        v2 += v1; v1 = rotl(v1, 17); v1 ^= v2; v2 = rotl(v2, 32);                                  \
    } while (0)

/* SipHash-2-4 of one 8-byte message m (its little-endian encoding). */
static uint64_t siphash24_u64(uint64_t k0, uint64_t k1, uint64_t m) {
    uint64_t v0 = 0x736f6d6570736575ULL ^ k0;
    uint64_t v1 = 0x646f72616e646f6dULL ^ k1;
    uint64_t v2 = 0x6c7967656e657261ULL ^ k0;
    uint64_t v3 = 0x7465646279746573ULL ^ k1;
    v3 ^= m;
    SIPROUND;
    SIPROUND;
    v0 ^= m;
    uint64_t b = (uint64_t)8 << 56; /* message length 8, no tail bytes */
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xff;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    return v0 ^ v1 ^ v2 ^ v3;
}

static void usage(void) {
    fprintf(stderr, "usage: hashchain N [SEED]\n"
                    "  N: iterations, 0..%llu; SEED: unsigned 64-bit, decimal or 0x hex (default 0)\n",
            (unsigned long long)MAX_N);
}

int main(int argc, char **argv) {
    uint64_t n, seed = 0;
    if (argc < 2 || argc > 3 || job_parse_u64(argv[1], 0, MAX_N, &n) != 0 ||
        (argc == 3 && job_parse_u64(argv[2], 0, UINT64_MAX, &seed) != 0)) {
        usage();
        return JOB_EXIT_USAGE;
    }

    /* Reference vector from the SipHash paper's test set: key 00..0f,
     * message 00..07 -> 0x93f5f5799a932462. */
    if (siphash24_u64(0x0706050403020100ULL, 0x0f0e0d0c0b0a0908ULL, 0x0706050403020100ULL) !=
        0x93f5f5799a932462ULL) {
        fprintf(stderr, "hashchain: SipHash self-test failed\n");
        return JOB_EXIT_ERROR;
    }

    const uint64_t k0 = job_mix64(seed), k1 = job_mix64(seed ^ 0xa5a5a5a5a5a5a5a5ULL);
    uint64_t h = seed;
    for (uint64_t i = 0; i < n; i++) h = siphash24_u64(k0, k1, h);

    printf("hashchain: n %llu seed %llu final %016llx\n", (unsigned long long)n, (unsigned long long)seed,
           (unsigned long long)h);
    return job_finish("hashchain");
}
