/*
 * nn - neural-network inference over an input batch (float32, float-heavy).
 *
 *   nn [NAME [PASSES]]      (defaults: NAME=batch, PASSES=1; PASSES 1..100000)
 *
 * Input /input/NAME: raw little-endian IEEE-754 float32 values, 64 per row
 * (256 bytes a row, no header); the file size must be a non-zero multiple
 * of 256 bytes (at most 64 MiB).
 *
 * Model: a multilayer perceptron 64 -> 128 (tanh) -> 64 (relu) -> 10
 * (softmax), float32 weights and activations. The weights are not loaded:
 * they are generated inside the program from a fixed seed (SplitMix64,
 * Glorot-uniform ranges), so the job is self-contained.
 *
 * Output /output/predictions.txt: one line per row,
 *   ROW CLASS P0 P1 ... P9
 * with the probabilities printed as %.6f. stdout: a summary with the class
 * histogram, the mean top probability and an FNV-1a digest over the exact
 * bits of every logit (so any difference in float evaluation shows).
 *
 * PASSES > 1 runs the whole batch again PASSES times (for benchmarks); every
 * pass computes the same numbers, the output is that of the last pass and
 * the digest covers all passes.
 *
 * Determinism: dot products accumulate in a fixed order in float32 (no
 * fast-math, no FP contraction), tanh/exp come from agora_job.h, so the
 * native and the WASM builds produce identical bytes.
 */
#include "agora_job.h"

#define IN 64
#define H1 128
#define H2 64
#define OUT 10
#define MAX_BYTES (64u << 20)
#define MAX_PASSES 100000
#define WEIGHT_SEED 0x4e4e5eedULL

typedef struct {
    float w1[H1][IN], b1[H1];
    float w2[H2][H1], b2[H2];
    float w3[OUT][H2], b3[OUT];
} model;

static void init_layer(uint64_t *st, float *w, float *b, int fan_in, int fan_out) {
    double a = __builtin_sqrt(6.0 / (double)(fan_in + fan_out));
    for (int i = 0; i < fan_in * fan_out; i++) w[i] = (float)((2.0 * job_u01(job_splitmix64(st)) - 1.0) * a);
    for (int i = 0; i < fan_out; i++) b[i] = (float)((2.0 * job_u01(job_splitmix64(st)) - 1.0) * 0.1);
}

/* y[j] = sum_i w[j][i] * x[i] + b[j], accumulated in order i = 0..n-1. */
static void dense(const float *w, const float *b, const float *x, float *y, int n_in, int n_out) {
    for (int j = 0; j < n_out; j++) {
        const float *row = w + (size_t)j * n_in;
        float acc = 0.0f;
        for (int i = 0; i < n_in; i++) acc += row[i] * x[i];
        y[j] = acc + b[j];
    }
}

static void infer(const model *m, const float *x, float logits[OUT]) {
    float h1[H1], h2[H2];
    dense(&m->w1[0][0], m->b1, x, h1, IN, H1);
    for (int j = 0; j < H1; j++) h1[j] = (float)job_tanh((double)h1[j]);
    dense(&m->w2[0][0], m->b2, h1, h2, H1, H2);
    for (int j = 0; j < H2; j++) h2[j] = h2[j] > 0.0f ? h2[j] : 0.0f;
    dense(&m->w3[0][0], m->b3, h2, logits, H2, OUT);
}

static void softmax(const float logits[OUT], double p[OUT]) {
    double mx = logits[0], sum = 0.0;
    for (int k = 1; k < OUT; k++)
        if (logits[k] > mx) mx = logits[k];
    for (int k = 0; k < OUT; k++) sum += (p[k] = job_exp((double)logits[k] - mx));
    for (int k = 0; k < OUT; k++) p[k] /= sum;
}

static void usage(void) {
    fprintf(stderr,
            "usage: nn [NAME [PASSES]]\n"
            "  reads /input/NAME (default NAME=batch): little-endian float32 rows of %d values\n"
            "  writes /output/predictions.txt; PASSES 1..%d (default 1)\n",
            IN, MAX_PASSES);
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "batch";
    uint64_t passes = 1;
    char in_path[4096], out_path[4096];
    if (argc > 3 || (argc > 2 && job_parse_u64(argv[2], 1, MAX_PASSES, &passes) != 0)) {
        usage();
        return JOB_EXIT_USAGE;
    }
    if (job_input_path(in_path, sizeof in_path, name) != 0) {
        fprintf(stderr, "nn: bad input name '%s' (a plain file name under /input)\n", name);
        usage();
        return JOB_EXIT_USAGE;
    }
    if (job_output_path(out_path, sizeof out_path, "predictions.txt") != 0) {
        fprintf(stderr, "nn: output path too long\n");
        return JOB_EXIT_ERROR;
    }

    /* read the whole batch */
    FILE *in = fopen(in_path, "rb");
    if (in == NULL) {
        job_fail("nn", "cannot open", in_path);
        return JOB_EXIT_ERROR;
    }
    size_t cap = 1 << 16, len = 0;
    unsigned char *raw = malloc(cap);
    for (;;) {
        if (raw == NULL) {
            fprintf(stderr, "nn: out of memory\n");
            return JOB_EXIT_ERROR;
        }
        size_t got = fread(raw + len, 1, cap - len, in);
        len += got;
        if (len > MAX_BYTES) {
            fprintf(stderr, "nn: %s is larger than %u bytes\n", in_path, MAX_BYTES);
            return JOB_EXIT_ERROR;
        }
        if (got == 0) break;
        if (len == cap) {
            cap *= 2;
            raw = realloc(raw, cap);
        }
    }
    if (ferror(in)) {
        job_fail("nn", "error reading", in_path);
        return JOB_EXIT_ERROR;
    }
    fclose(in);
    if (len == 0 || len % (IN * 4) != 0) {
        fprintf(stderr, "nn: %s has %zu bytes; expected a non-zero multiple of %d (rows of %d float32)\n",
                in_path, len, IN * 4, IN);
        return JOB_EXIT_ERROR;
    }
    size_t rows = len / (IN * 4);
    float *x = malloc(len);
    if (x == NULL) {
        fprintf(stderr, "nn: out of memory\n");
        return JOB_EXIT_ERROR;
    }
    size_t nonfinite = 0;
    for (size_t i = 0; i < rows * IN; i++) {
        const unsigned char *b = raw + 4 * i;
        union { uint32_t u; float f; } v;
        v.u = (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
        if ((v.u & 0x7f800000u) == 0x7f800000u) { /* inf or NaN: replace by 0 */
            v.f = 0.0f;
            nonfinite++;
        }
        x[i] = v.f;
    }
    free(raw);

    model *m = malloc(sizeof *m);
    if (m == NULL) {
        fprintf(stderr, "nn: out of memory\n");
        return JOB_EXIT_ERROR;
    }
    uint64_t st = WEIGHT_SEED;
    init_layer(&st, &m->w1[0][0], m->b1, IN, H1);
    init_layer(&st, &m->w2[0][0], m->b2, H1, H2);
    init_layer(&st, &m->w3[0][0], m->b3, H2, OUT);

    float *logits = malloc(rows * OUT * sizeof(float));
    if (logits == NULL) {
        fprintf(stderr, "nn: out of memory\n");
        return JOB_EXIT_ERROR;
    }
    uint64_t digest = JOB_FNV_OFFSET;
    for (uint64_t pass = 0; pass < passes; pass++) {
        for (size_t r = 0; r < rows; r++) infer(m, x + r * IN, logits + r * OUT);
        digest = job_fnv1a64(digest, logits, rows * OUT * sizeof(float)); /* little-endian bits */
    }

    FILE *f = fopen(out_path, "wb");
    if (f == NULL) {
        job_fail("nn", "cannot create", out_path);
        return JOB_EXIT_ERROR;
    }
    size_t hist[OUT] = {0};
    double conf_sum = 0.0;
    for (size_t r = 0; r < rows; r++) {
        double p[OUT];
        softmax(logits + r * OUT, p);
        int best = 0;
        for (int k = 1; k < OUT; k++)
            if (p[k] > p[best]) best = k;
        hist[best]++;
        conf_sum += p[best];
        fprintf(f, "%zu %d", r, best);
        for (int k = 0; k < OUT; k++) fprintf(f, " %.6f", p[k]);
        fputc('\n', f);
    }
    if (ferror(f) | (fclose(f) != 0)) {
        job_fail("nn", "cannot write", out_path);
        return JOB_EXIT_ERROR;
    }

    printf("nn: mlp %d-%d-%d-%d, %zu rows x %llu passes, %zu non-finite inputs zeroed\n", IN, H1, H2, OUT, rows,
           (unsigned long long)passes, nonfinite);
    printf("classes");
    for (int k = 0; k < OUT; k++) printf(" %d:%zu", k, hist[k]);
    printf("\nmean_top_prob %.6f logits_fnv1a64 %016llx\nwrote predictions.txt\n", conf_sum / (double)rows,
           (unsigned long long)digest);
    free(logits);
    free(x);
    free(m);
    return job_finish("nn");
}
