/*
 * life - a checkpointed job: Conway's Game of Life on a 128x128 torus, run in
 * STEPS equal steps of GENS generations each.
 *
 *   life [STEPS [GENS [SEED]]]    (defaults 1000 4 1; STEPS 1..10^6,
 *                                  GENS 1..10^6, SEED unsigned 64-bit)
 *
 * The grid starts with each cell alive with probability 1/4, drawn from
 * SplitMix64(SEED). Every 100 steps one progress line goes to stdout; after
 * the last step the grid is written to /output/life.pbm (plain PBM, P1) and
 * a summary line (population, FNV-1a of the grid, FNV-1a chain of every
 * step's population) to stdout.
 *
 * This job follows Agora's checkpoint ABI (docs/checkpoint-abi.md): in WASM
 * it is a reactor whose `_initialize` parses the arguments, and whose
 * exported `agora_step` runs one step and returns 0 (more) or 1 (done); the
 * host hashes memory, the exported `__stack_pointer` and the virtual WASI
 * state between steps, so a dispute re-runs one step instead of the whole
 * job. Its `_start` does the same as `_initialize` followed by calling
 * `agora_step` until it returns 1, so an ordinary WASI run gives the same
 * result digest. Only the last step opens a file, as the ABI requires.
 * Natively, `main` runs the same steps.
 */
#include "agora_job.h"

#ifdef __wasi__
#include <wasi/api.h>
#endif

#define SIDE 128
#define MAX_STEPS 1000000ULL
#define MAX_GENS 1000000ULL

static uint8_t grid[SIDE][SIDE];
static uint8_t next[SIDE][SIDE];
static uint64_t steps, gens, seed;
static uint64_t step_no;     /* steps completed */
static uint64_t chain = JOB_FNV_OFFSET; /* FNV-1a over every step's population */

static void usage(void) {
    fprintf(stderr, "usage: life [STEPS [GENS [SEED]]]\n"
                    "  STEPS: 1..%llu (default 1000); GENS: generations per step, 1..%llu (default 4);\n"
                    "  SEED: unsigned 64-bit, decimal or 0x hex (default 1)\n",
            (unsigned long long)MAX_STEPS, (unsigned long long)MAX_GENS);
}

/* Parses the arguments and seeds the grid; returns an exit code, 0 when the
 * job can start. */
static int setup(int argc, char **argv) {
    steps = 1000;
    gens = 4;
    seed = 1;
    if (argc > 4 || (argc > 1 && job_parse_u64(argv[1], 1, MAX_STEPS, &steps) != 0) ||
        (argc > 2 && job_parse_u64(argv[2], 1, MAX_GENS, &gens) != 0) ||
        (argc > 3 && job_parse_u64(argv[3], 0, UINT64_MAX, &seed) != 0)) {
        usage();
        return JOB_EXIT_USAGE;
    }
    uint64_t state = seed;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) grid[y][x] = (job_splitmix64(&state) >> 62) == 0;
    return JOB_EXIT_OK;
}

/* One generation; the neighbour count is branch-free so every generation
 * costs the same whatever the pattern. */
static void generation(void) {
    for (int y = 0; y < SIDE; y++) {
        const uint8_t *up = grid[(y + SIDE - 1) % SIDE], *row = grid[y], *down = grid[(y + 1) % SIDE];
        for (int x = 0; x < SIDE; x++) {
            int l = (x + SIDE - 1) % SIDE, r = (x + 1) % SIDE;
            int n = up[l] + up[x] + up[r] + row[l] + row[r] + down[l] + down[x] + down[r];
            next[y][x] = (uint8_t)((n == 3) | ((n == 2) & row[x]));
        }
    }
    memcpy(grid, next, sizeof grid);
}

static uint64_t population(void) {
    uint64_t p = 0;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) p += grid[y][x];
    return p;
}

static int write_grid(void) {
    char path[512];
    if (job_output_path(path, sizeof path, "life.pbm") != 0) return JOB_EXIT_ERROR;
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        job_fail("life", "cannot create", path);
        return JOB_EXIT_ERROR;
    }
    fprintf(f, "P1\n%d %d\n", SIDE, SIDE);
    for (int y = 0; y < SIDE; y++) {
        char line[SIDE + 1];
        for (int x = 0; x < SIDE; x++) line[x] = grid[y][x] ? '1' : '0';
        line[SIDE] = '\n';
        fwrite(line, 1, sizeof line, f);
    }
    if (fclose(f) != 0) {
        job_fail("life", "cannot write", path);
        return JOB_EXIT_ERROR;
    }
    return JOB_EXIT_OK;
}

/* Runs one step; returns 0 while steps remain, 1 after the last one. */
static int step(void) {
    for (uint64_t g = 0; g < gens; g++) generation();
    uint64_t pop = population();
    chain = job_fnv1a64(chain, &pop, sizeof pop);
    step_no++;
    if (step_no % 100 == 0 && step_no < steps) {
        printf("life: step %llu population %llu\n", (unsigned long long)step_no, (unsigned long long)pop);
        fflush(stdout);
    }
    if (step_no < steps) return 0;
    int rc = write_grid();
    if (rc != JOB_EXIT_OK) exit(rc);
    printf("life: steps %llu gens %llu seed %llu population %llu grid %016llx chain %016llx\n",
           (unsigned long long)steps, (unsigned long long)gens, (unsigned long long)seed,
           (unsigned long long)pop, (unsigned long long)job_fnv1a64(JOB_FNV_OFFSET, grid, sizeof grid),
           (unsigned long long)chain);
    rc = job_finish("life");
    if (rc != JOB_EXIT_OK) exit(rc);
    return 1;
}

#ifdef __wasi__
/* A reactor has no main, so the arguments come straight from WASI. Run by
 * `_initialize` (and by `_start` below) through the constructor list. */
__attribute__((constructor)) static void init(void) {
    size_t argc = 0, size = 0;
    if (__wasi_args_sizes_get(&argc, &size) != 0 || argc > 16 || size > 4096) {
        usage();
        exit(JOB_EXIT_USAGE);
    }
    char *argv[16];
    char buf[4096];
    if (__wasi_args_get((uint8_t **)argv, (uint8_t *)buf) != 0) exit(JOB_EXIT_ERROR);
    int rc = setup((int)argc, argv);
    if (rc != JOB_EXIT_OK) exit(rc);
}

__attribute__((export_name("agora_step"))) int agora_step(void) { return step(); }

extern void __wasm_call_ctors(void);

/* The ordinary WASI entry point: initialise, then run every step. */
__attribute__((export_name("_start"))) void start(void) {
    __wasm_call_ctors();
    while (step() == 0) {
    }
}
#else
int main(int argc, char **argv) {
    int rc = setup(argc, argv);
    if (rc != JOB_EXIT_OK) return rc;
    while (step() == 0) {
    }
    return JOB_EXIT_OK;
}
#endif
