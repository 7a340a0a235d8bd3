/*
 * pathtrace - a small Monte Carlo path tracer that renders ONE TILE of a frame.
 *
 *   pathtrace WIDTH HEIGHT ROW_START ROW_END SAMPLES
 *
 * Renders rows ROW_START..ROW_END (end exclusive, row 0 at the top) of a
 * WIDTH x HEIGHT frame with SAMPLES paths per pixel and writes them to
 * /output/tile.ppm (binary P6, WIDTH x (ROW_END - ROW_START) pixels).
 * Prints a one-line summary to stdout.
 *
 * Scene: a checkered ground plane, diffuse and metal spheres, one spherical
 * area light and a dim sky; up to MAX_DEPTH bounces per path.
 *
 * Determinism: every random number of a path comes from a generator seeded
 * by (x, y, sample) only, never by the tile, so tiles rendered separately
 * (by different providers) and stacked top to bottom are byte-identical to
 * the frame rendered in one piece. Only +, -, *, / and sqrt are used, so the
 * native build and the WASM build produce the same bytes.
 */
#include "agora_job.h"

#define MAX_DIM 16384
#define MAX_SAMPLES 1000000
#define MAX_DEPTH 6
#define SCENE_SEED 0x5eed0a90a5ULL

typedef struct { double x, y, z; } vec3;

static inline vec3 v3(double x, double y, double z) { vec3 r = {x, y, z}; return r; }
static inline vec3 vadd(vec3 a, vec3 b) { return v3(a.x + b.x, a.y + b.y, a.z + b.z); }
static inline vec3 vsub(vec3 a, vec3 b) { return v3(a.x - b.x, a.y - b.y, a.z - b.z); }
static inline vec3 vmul(vec3 a, vec3 b) { return v3(a.x * b.x, a.y * b.y, a.z * b.z); }
static inline vec3 vscale(vec3 a, double s) { return v3(a.x * s, a.y * s, a.z * s); }
static inline double vdot(vec3 a, vec3 b) { return a.x * b.x + a.y * b.y + a.z * b.z; }
static inline vec3 vcross(vec3 a, vec3 b) {
    return v3(a.y * b.z - a.z * b.y, a.z * b.x - a.x * b.z, a.x * b.y - a.y * b.x);
}
static inline vec3 vnorm(vec3 a) { return vscale(a, 1.0 / __builtin_sqrt(vdot(a, a))); }

enum material { DIFFUSE, METAL, LIGHT };

typedef struct {
    vec3 center;
    double radius;
    enum material mat;
    vec3 color;  /* albedo, or emitted radiance for LIGHT */
    double fuzz; /* METAL roughness */
} sphere;

static const sphere SPHERES[] = {
    {{0.0, 1.0, 0.0}, 1.0, DIFFUSE, {0.75, 0.25, 0.22}, 0.0},
    {{-2.1, 0.8, -0.5}, 0.8, METAL, {0.85, 0.85, 0.9}, 0.02},
    {{2.0, 0.7, -0.3}, 0.7, METAL, {0.9, 0.7, 0.3}, 0.3},
    {{0.9, 0.35, 1.5}, 0.35, DIFFUSE, {0.2, 0.35, 0.8}, 0.0},
    {{-0.9, 0.25, 1.7}, 0.25, DIFFUSE, {0.25, 0.7, 0.3}, 0.0},
    {{0.5, 5.0, 1.0}, 1.4, LIGHT, {7.0, 6.6, 6.0}, 0.0},
};
#define NSPHERES ((int)(sizeof SPHERES / sizeof SPHERES[0]))

typedef struct { uint64_t s; } rng;

static inline double rnd(rng *r) { return job_u01(job_splitmix64(&r->s)); }

/* Seed of one path: a function of (x, y, sample) alone. */
static inline rng path_rng(uint32_t x, uint32_t y, uint32_t sample) {
    uint64_t h = job_mix64(SCENE_SEED ^ (((uint64_t)y << 32) | x));
    rng r = {job_mix64(h ^ ((uint64_t)sample * 0xd1342543de82ef95ULL))};
    return r;
}

/* Uniform point in the unit ball by rejection (no trigonometry needed). */
static vec3 random_in_ball(rng *r) {
    for (;;) {
        vec3 p = v3(2.0 * rnd(r) - 1.0, 2.0 * rnd(r) - 1.0, 2.0 * rnd(r) - 1.0);
        if (vdot(p, p) < 1.0 && vdot(p, p) > 1e-12) return p;
    }
}

typedef struct {
    double t;
    vec3 p, n;      /* hit point and outward unit normal */
    int obj;        /* sphere index, or -1 for the ground plane */
} hit;

static int intersect(vec3 o, vec3 d, hit *h) {
    const double tmin = 1e-6;
    double best = 1e30;
    int found = 0;
    for (int i = 0; i < NSPHERES; i++) {
        vec3 oc = vsub(o, SPHERES[i].center);
        double b = vdot(oc, d); /* d is unit length */
        double c = vdot(oc, oc) - SPHERES[i].radius * SPHERES[i].radius;
        double disc = b * b - c;
        if (disc <= 0.0) continue;
        double sq = __builtin_sqrt(disc);
        double t = -b - sq;
        if (t < tmin) t = -b + sq;
        if (t < tmin || t >= best) continue;
        best = t;
        h->obj = i;
        found = 1;
    }
    if (d.y < -1e-12) { /* ground plane y = 0 */
        double t = -o.y / d.y;
        if (t >= tmin && t < best) {
            best = t;
            h->obj = -1;
            found = 1;
        }
    }
    if (!found) return 0;
    h->t = best;
    h->p = vadd(o, vscale(d, best));
    if (h->obj >= 0) {
        const sphere *s = &SPHERES[h->obj];
        h->n = vscale(vsub(h->p, s->center), 1.0 / s->radius);
    } else {
        h->n = v3(0.0, 1.0, 0.0);
    }
    return 1;
}

static vec3 sky(vec3 d) {
    double t = 0.5 * (d.y + 1.0);
    return vadd(vscale(v3(0.06, 0.06, 0.08), 1.0 - t), vscale(v3(0.12, 0.18, 0.3), t));
}

static vec3 trace(vec3 o, vec3 d, rng *r) {
    vec3 radiance = v3(0, 0, 0);
    vec3 throughput = v3(1, 1, 1);
    for (int depth = 0; depth < MAX_DEPTH; depth++) {
        hit h;
        if (!intersect(o, d, &h)) {
            radiance = vadd(radiance, vmul(throughput, sky(d)));
            break;
        }
        vec3 albedo;
        vec3 n = h.n;
        int into = vdot(d, n) < 0.0;
        if (!into) n = vscale(n, -1.0);
        if (h.obj >= 0 && SPHERES[h.obj].mat == LIGHT) {
            if (into) radiance = vadd(radiance, vmul(throughput, SPHERES[h.obj].color));
            break;
        }
        vec3 next;
        if (h.obj >= 0 && SPHERES[h.obj].mat == METAL) {
            const sphere *s = &SPHERES[h.obj];
            vec3 refl = vsub(d, vscale(n, 2.0 * vdot(d, n)));
            next = vadd(refl, vscale(random_in_ball(r), s->fuzz));
            if (vdot(next, n) <= 0.0) break; /* absorbed */
            albedo = s->color;
        } else {
            /* Lambertian: normal + random unit vector (cosine weighted) */
            next = vadd(n, vnorm(random_in_ball(r)));
            if (vdot(next, next) < 1e-12) next = n;
            if (h.obj >= 0) {
                albedo = SPHERES[h.obj].color;
            } else {
                long cx = (long)(h.p.x < 0 ? h.p.x - 1.0 : h.p.x);
                long cz = (long)(h.p.z < 0 ? h.p.z - 1.0 : h.p.z);
                albedo = ((cx + cz) & 1) ? v3(0.75, 0.75, 0.72) : v3(0.25, 0.25, 0.3);
            }
        }
        throughput = vmul(throughput, albedo);
        o = h.p;
        d = vnorm(next);
    }
    return radiance;
}

static unsigned char to_byte(double c) {
    if (!(c > 0.0)) return 0;
    c = __builtin_sqrt(c); /* gamma 2 */
    if (c >= 1.0) return 255;
    return (unsigned char)(c * 255.999);
}

static void usage(void) {
    fprintf(stderr,
            "usage: pathtrace WIDTH HEIGHT ROW_START ROW_END SAMPLES\n"
            "  renders rows ROW_START..ROW_END (exclusive) of a WIDTH x HEIGHT frame\n"
            "  into /output/tile.ppm; 1 <= WIDTH,HEIGHT <= %d, 0 <= ROW_START < ROW_END <= HEIGHT,\n"
            "  1 <= SAMPLES <= %d\n",
            MAX_DIM, MAX_SAMPLES);
}

int main(int argc, char **argv) {
    uint64_t w, hgt, r0, r1, spp;
    if (argc != 6 || job_parse_u64(argv[1], 1, MAX_DIM, &w) || job_parse_u64(argv[2], 1, MAX_DIM, &hgt) ||
        job_parse_u64(argv[3], 0, MAX_DIM, &r0) || job_parse_u64(argv[4], 1, MAX_DIM, &r1) ||
        job_parse_u64(argv[5], 1, MAX_SAMPLES, &spp) || r0 >= r1 || r1 > hgt) {
        usage();
        return JOB_EXIT_USAGE;
    }
    const uint32_t W = (uint32_t)w, H = (uint32_t)hgt, R0 = (uint32_t)r0, R1 = (uint32_t)r1;
    const uint32_t S = (uint32_t)spp;
    const uint32_t rows = R1 - R0;

    /* camera */
    const vec3 eye = v3(0.0, 1.6, 5.5), target = v3(0.0, 0.8, 0.0), up = v3(0, 1, 0);
    const double half_h = 0.36397023426620234; /* tan(20 deg): 40 degree vertical FOV */
    const double half_w = half_h * (double)W / (double)H;
    const vec3 fwd = vnorm(vsub(target, eye));
    const vec3 right = vnorm(vcross(fwd, up));
    const vec3 cup = vcross(right, fwd);

    size_t npix = (size_t)W * rows;
    unsigned char *img = malloc(npix * 3);
    if (img == NULL) {
        fprintf(stderr, "pathtrace: out of memory for %zu pixels\n", npix);
        return JOB_EXIT_ERROR;
    }
    double sum[3] = {0, 0, 0};
    for (uint32_t y = R0; y < R1; y++) {
        for (uint32_t x = 0; x < W; x++) {
            vec3 acc = v3(0, 0, 0);
            for (uint32_t s = 0; s < S; s++) {
                rng r = path_rng(x, y, s);
                double u = (2.0 * ((double)x + rnd(&r)) / (double)W - 1.0) * half_w;
                double v = (1.0 - 2.0 * ((double)y + rnd(&r)) / (double)H) * half_h;
                vec3 d = vnorm(vadd(fwd, vadd(vscale(right, u), vscale(cup, v))));
                acc = vadd(acc, trace(eye, d, &r));
            }
            acc = vscale(acc, 1.0 / (double)S);
            sum[0] += acc.x;
            sum[1] += acc.y;
            sum[2] += acc.z;
            unsigned char *px = img + ((size_t)(y - R0) * W + x) * 3;
            px[0] = to_byte(acc.x);
            px[1] = to_byte(acc.y);
            px[2] = to_byte(acc.z);
        }
    }

    char path[4096];
    if (job_output_path(path, sizeof path, "tile.ppm") != 0) {
        fprintf(stderr, "pathtrace: output path too long\n");
        return JOB_EXIT_ERROR;
    }
    FILE *f = fopen(path, "wb");
    if (f == NULL) {
        job_fail("pathtrace", "cannot create", path);
        return JOB_EXIT_ERROR;
    }
    int hdr = fprintf(f, "P6\n%u %u\n255\n", W, rows);
    size_t wrote = fwrite(img, 1, npix * 3, f);
    if (hdr < 0 || wrote != npix * 3 || fclose(f) != 0) {
        job_fail("pathtrace", "cannot write", path);
        return JOB_EXIT_ERROR;
    }
    uint64_t ck = job_fnv1a64(JOB_FNV_OFFSET, img, npix * 3);
    free(img);

    printf("pathtrace: frame %ux%u rows %u..%u spp %u -> tile.ppm %ux%u (%zu bytes) "
           "mean_rgb %.6f %.6f %.6f fnv1a64 %016llx\n",
           W, H, R0, R1, S, W, rows, npix * 3 + (size_t)hdr, sum[0] / (double)npix,
           sum[1] / (double)npix, sum[2] / (double)npix, (unsigned long long)ck);
    return job_finish("pathtrace");
}
