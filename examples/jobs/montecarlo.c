/*
 * montecarlo - two Monte Carlo estimates from one seeded stream of numbers.
 *
 *   montecarlo [SAMPLES [SEED]]      (defaults: 1000000 and 1)
 *
 * 1. pi, from the fraction of uniform points in the unit square that fall
 *    inside the quarter circle;
 * 2. the price of a European call option (S0=100, K=105, r=5%, sigma=20%,
 *    T=1 year) by simulating the terminal price under geometric Brownian
 *    motion with standard normals from Marsaglia's polar method, and the
 *    discounted mean payoff.
 * Each is printed with its standard error; the call also with the closed
 * form Black-Scholes price for comparison. No files are read or written.
 *
 * Determinism: SplitMix64 seeded from SEED; log/exp/sqrt are the agora_job.h
 * versions built from basic IEEE operations, so the native and the WASM
 * builds print the same digits.
 */
#include "agora_job.h"

#define MAX_SAMPLES 10000000000ULL /* 1e10 */

static void usage(void) {
    fprintf(stderr,
            "usage: montecarlo [SAMPLES [SEED]]\n"
            "  SAMPLES: 1..%llu (default 1000000); SEED: unsigned 64-bit, decimal or 0x hex (default 1)\n",
            (unsigned long long)MAX_SAMPLES);
}

/* One standard normal variate (Marsaglia polar method; the second variate of
 * each pair is discarded to keep the stream simple). */
static double normal(uint64_t *st) {
    for (;;) {
        double u = 2.0 * job_u01(job_splitmix64(st)) - 1.0;
        double v = 2.0 * job_u01(job_splitmix64(st)) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0) return u * __builtin_sqrt(-2.0 * job_log(s) / s);
    }
}

int main(int argc, char **argv) {
    uint64_t n = 1000000, seed = 1;
    if (argc > 3 || (argc > 1 && job_parse_u64(argv[1], 1, MAX_SAMPLES, &n) != 0) ||
        (argc > 2 && job_parse_u64(argv[2], 0, UINT64_MAX, &seed) != 0)) {
        usage();
        return JOB_EXIT_USAGE;
    }

    /* Two independent streams derived from the seed. */
    uint64_t st_pi = job_mix64(seed ^ 0x7069000000000000ULL);  /* "pi" */
    uint64_t st_opt = job_mix64(seed ^ 0x6f70740000000000ULL); /* "opt" */

    uint64_t inside = 0;
    for (uint64_t i = 0; i < n; i++) {
        double x = job_u01(job_splitmix64(&st_pi));
        double y = job_u01(job_splitmix64(&st_pi));
        if (x * x + y * y < 1.0) inside++;
    }
    double p = (double)inside / (double)n;
    double pi_est = 4.0 * p;
    double pi_se = 4.0 * __builtin_sqrt(p * (1.0 - p) / (double)n);

    const double S0 = 100.0, K = 105.0, r = 0.05, sigma = 0.2, T = 1.0;
    const double drift = (r - 0.5 * sigma * sigma) * T;
    const double vol = sigma * __builtin_sqrt(T);
    const double disc = job_exp(-r * T);
    const double black_scholes = 8.021352; /* closed form for these parameters */
    double sum = 0.0, sumsq = 0.0;
    for (uint64_t i = 0; i < n; i++) {
        double st = S0 * job_exp(drift + vol * normal(&st_opt));
        double payoff = st > K ? disc * (st - K) : 0.0;
        sum += payoff;
        sumsq += payoff * payoff;
    }
    double mean = sum / (double)n;
    double var = n > 1 ? (sumsq - sum * mean) / (double)(n - 1) : 0.0;
    if (var < 0.0) var = 0.0;
    double se = __builtin_sqrt(var / (double)n);

    printf("montecarlo: samples %llu seed %llu\n", (unsigned long long)n, (unsigned long long)seed);
    printf("pi %.8f stderr %.8f (error %+.8f)\n", pi_est, pi_se, pi_est - 3.14159265358979323846);
    printf("european_call %.6f stderr %.6f (black-scholes %.6f, S0=100 K=105 r=0.05 sigma=0.2 T=1)\n", mean,
           se, black_scholes);
    return job_finish("montecarlo");
}
