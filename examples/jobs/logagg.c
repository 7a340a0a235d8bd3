/*
 * logagg - batch aggregation of a web access log (Combined Log Format).
 *
 *   logagg [NAME [TOP_N]]     (defaults: NAME=log, TOP_N=10; TOP_N 1..1000)
 *
 * Reads /input/NAME, one request per line:
 *   IP - USER [DD/Mon/YYYY:HH:MM:SS +ZZZZ] "METHOD TARGET PROTO" STATUS BYTES ["REFERER" "AGENT"]
 * and counts requests by status, status class, method, hour of day, path
 * (TARGET without its query string) and client IP, with total bytes and
 * the TOP_N paths and IPs. Lines that do not parse (or are longer than
 * 64 KiB) are counted as malformed and skipped.
 * Writes /output/summary.json and prints a short summary to stdout.
 *
 * Determinism: integer counting only; ties in the top-N lists are broken
 * by name, so the output does not depend on hash-table order.
 */
#include "agora_job.h"

#define MAX_LINE 65536
#define MAX_TOP 1000

/* ------------------------------------------------------- string counter */

typedef struct {
    char *key;
    uint64_t count;
    uint64_t bytes;
} entry;

typedef struct {
    entry *slots;
    size_t cap; /* power of two */
    size_t len;
} table;

static int table_init(table *t) {
    t->cap = 1024;
    t->len = 0;
    t->slots = calloc(t->cap, sizeof(entry));
    return t->slots ? 0 : -1;
}

static int table_grow(table *t) {
    size_t ncap = t->cap * 2;
    entry *ns = calloc(ncap, sizeof(entry));
    if (ns == NULL) return -1;
    for (size_t i = 0; i < t->cap; i++) {
        if (t->slots[i].key == NULL) continue;
        size_t j = (size_t)job_fnv1a64(JOB_FNV_OFFSET, t->slots[i].key, strlen(t->slots[i].key)) & (ncap - 1);
        while (ns[j].key != NULL) j = (j + 1) & (ncap - 1);
        ns[j] = t->slots[i];
    }
    free(t->slots);
    t->slots = ns;
    t->cap = ncap;
    return 0;
}

/* Add one request of `bytes` bytes under key[0..n). Returns -1 on OOM. */
static int table_add(table *t, const char *key, size_t n, uint64_t bytes) {
    if ((t->len + 1) * 10 > t->cap * 7 && table_grow(t) != 0) return -1;
    size_t j = (size_t)job_fnv1a64(JOB_FNV_OFFSET, key, n) & (t->cap - 1);
    while (t->slots[j].key != NULL) {
        if (strncmp(t->slots[j].key, key, n) == 0 && t->slots[j].key[n] == '\0') {
            t->slots[j].count++;
            t->slots[j].bytes += bytes;
            return 0;
        }
        j = (j + 1) & (t->cap - 1);
    }
    char *k = malloc(n + 1);
    if (k == NULL) return -1;
    memcpy(k, key, n);
    k[n] = '\0';
    t->slots[j].key = k;
    t->slots[j].count = 1;
    t->slots[j].bytes = bytes;
    t->len++;
    return 0;
}

static int by_count_then_key(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return strcmp(x->key, y->key);
}

static int by_key(const void *a, const void *b) {
    return strcmp(((const entry *)a)->key, ((const entry *)b)->key);
}

/* Compact the table into a sorted array (the table is unusable afterwards). */
static entry *table_sorted(table *t, int (*cmp)(const void *, const void *)) {
    size_t k = 0;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].key != NULL) t->slots[k++] = t->slots[i];
    qsort(t->slots, k, sizeof(entry), cmp);
    return t->slots;
}

/* ------------------------------------------------------------- parsing */

typedef struct {
    const char *ip;
    size_t ip_len;
    const char *method;
    size_t method_len;
    const char *path; /* target without ?query */
    size_t path_len;
    int hour;
    int status;
    uint64_t bytes;
} request;

static int parse_line(const char *s, request *r) {
    const char *p = strchr(s, ' ');
    if (p == NULL || p == s) return -1;
    r->ip = s;
    r->ip_len = (size_t)(p - s);
    /* timestamp: [DD/Mon/YYYY:HH:MM:SS zone] */
    const char *lb = strchr(p, '[');
    if (lb == NULL) return -1;
    const char *rb = strchr(lb, ']');
    const char *c = strchr(lb, ':');
    if (rb == NULL || c == NULL || c > rb || c + 3 > rb) return -1;
    if (c[1] < '0' || c[1] > '9' || c[2] < '0' || c[2] > '9' || c[3] != ':') return -1;
    r->hour = (c[1] - '0') * 10 + (c[2] - '0');
    if (r->hour > 23) return -1;
    /* request: "METHOD TARGET PROTO" */
    const char *q = rb + 1;
    if (q[0] != ' ' || q[1] != '"') return -1;
    q += 2;
    const char *qe = strchr(q, '"');
    if (qe == NULL) return -1;
    const char *sp1 = memchr(q, ' ', (size_t)(qe - q));
    if (sp1 == NULL || sp1 == q) return -1;
    r->method = q;
    r->method_len = (size_t)(sp1 - q);
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', (size_t)(qe - t));
    const char *te = sp2 ? sp2 : qe;
    if (te == t || t[0] != '/') return -1;
    const char *qm = memchr(t, '?', (size_t)(te - t));
    r->path = t;
    r->path_len = (size_t)((qm ? qm : te) - t);
    /* status and bytes */
    const char *st = qe + 1;
    if (st[0] != ' ' || st[1] < '1' || st[1] > '5' || st[2] < '0' || st[2] > '9' || st[3] < '0' ||
        st[3] > '9' || st[4] != ' ')
        return -1;
    r->status = (st[1] - '0') * 100 + (st[2] - '0') * 10 + (st[3] - '0');
    const char *b = st + 5;
    r->bytes = 0;
    if (b[0] == '-') {
        b++;
    } else {
        if (b[0] < '0' || b[0] > '9') return -1;
        int digits = 0;
        while (*b >= '0' && *b <= '9') {
            if (++digits > 15) return -1;
            r->bytes = r->bytes * 10 + (uint64_t)(*b - '0');
            b++;
        }
    }
    if (*b != '\0' && *b != ' ' && *b != '\n' && *b != '\r') return -1;
    return 0;
}

/* --------------------------------------------------------------- output */

static void json_str(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f) fprintf(f, "\\u%04x", *p); /* bytes as Latin-1 */
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void usage(void) {
    fprintf(stderr, "usage: logagg [NAME [TOP_N]]\n"
                    "  reads /input/NAME (default NAME=log), writes /output/summary.json; TOP_N 1..%d (default 10)\n",
            MAX_TOP);
}

static void oom(void) { fprintf(stderr, "logagg: out of memory\n"); }

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "log";
    uint64_t top = 10;
    char in_path[4096], out_path[4096];
    if (argc > 3 || (argc > 2 && job_parse_u64(argv[2], 1, MAX_TOP, &top) != 0)) {
        usage();
        return JOB_EXIT_USAGE;
    }
    if (job_input_path(in_path, sizeof in_path, name) != 0) {
        fprintf(stderr, "logagg: bad input name '%s' (a plain file name under /input)\n", name);
        usage();
        return JOB_EXIT_USAGE;
    }
    if (job_output_path(out_path, sizeof out_path, "summary.json") != 0) {
        fprintf(stderr, "logagg: output path too long\n");
        return JOB_EXIT_ERROR;
    }
    FILE *in = fopen(in_path, "rb");
    if (in == NULL) {
        job_fail("logagg", "cannot open", in_path);
        return JOB_EXIT_ERROR;
    }

    table paths, ips, methods;
    if (table_init(&paths) || table_init(&ips) || table_init(&methods)) {
        oom();
        return JOB_EXIT_ERROR;
    }
    uint64_t lines = 0, parsed = 0, malformed = 0, bytes_total = 0;
    uint64_t by_status[600] = {0}, by_class[6] = {0}, by_hour[24] = {0};
    static char line[MAX_LINE];
    while (fgets(line, sizeof line, in) != NULL) {
        size_t len = strlen(line);
        lines++;
        if (len == sizeof line - 1 && line[len - 1] != '\n') {
            /* over-long line: skip the rest of it */
            int ch;
            while ((ch = fgetc(in)) != EOF && ch != '\n') {
            }
            malformed++;
            continue;
        }
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        request r;
        if (len == 0 || parse_line(line, &r) != 0) {
            malformed++;
            continue;
        }
        parsed++;
        bytes_total += r.bytes;
        by_status[r.status]++;
        by_class[r.status / 100]++;
        by_hour[r.hour]++;
        if (table_add(&paths, r.path, r.path_len, r.bytes) || table_add(&ips, r.ip, r.ip_len, r.bytes) ||
            table_add(&methods, r.method, r.method_len, r.bytes)) {
            oom();
            return JOB_EXIT_ERROR;
        }
    }
    if (ferror(in)) {
        job_fail("logagg", "error reading", in_path);
        return JOB_EXIT_ERROR;
    }
    fclose(in);

    size_t n_paths = paths.len, n_ips = ips.len, n_methods = methods.len;
    entry *tp = table_sorted(&paths, by_count_then_key);
    entry *ti = table_sorted(&ips, by_count_then_key);
    entry *tm = table_sorted(&methods, by_key);
    size_t top_paths = n_paths < top ? n_paths : (size_t)top;
    size_t top_ips = n_ips < top ? n_ips : (size_t)top;
    uint64_t errors = by_class[4] + by_class[5];
    double error_rate = parsed ? (double)errors / (double)parsed : 0.0;

    FILE *f = fopen(out_path, "wb");
    if (f == NULL) {
        job_fail("logagg", "cannot create", out_path);
        return JOB_EXIT_ERROR;
    }
    fprintf(f, "{\n  \"input\": ");
    json_str(f, name);
    fprintf(f,
            ",\n  \"lines\": %llu,\n  \"parsed\": %llu,\n  \"malformed\": %llu,\n  \"bytes_total\": %llu,\n"
            "  \"unique_ips\": %zu,\n  \"unique_paths\": %zu,\n  \"error_rate\": %.6f,\n",
            (unsigned long long)lines, (unsigned long long)parsed, (unsigned long long)malformed,
            (unsigned long long)bytes_total, n_ips, n_paths, error_rate);
    fprintf(f, "  \"by_status\": {");
    int first = 1;
    for (int s = 100; s < 600; s++) {
        if (by_status[s] == 0) continue;
        fprintf(f, "%s\"%d\": %llu", first ? "" : ", ", s, (unsigned long long)by_status[s]);
        first = 0;
    }
    fprintf(f, "},\n  \"by_status_class\": {");
    for (int c = 1; c <= 5; c++)
        fprintf(f, "%s\"%dxx\": %llu", c == 1 ? "" : ", ", c, (unsigned long long)by_class[c]);
    fprintf(f, "},\n  \"by_method\": {");
    for (size_t i = 0; i < n_methods; i++) {
        fprintf(f, "%s", i ? ", " : "");
        json_str(f, tm[i].key);
        fprintf(f, ": %llu", (unsigned long long)tm[i].count);
    }
    fprintf(f, "},\n  \"by_hour\": [");
    for (int h = 0; h < 24; h++) fprintf(f, "%s%llu", h ? ", " : "", (unsigned long long)by_hour[h]);
    fprintf(f, "],\n  \"top_paths\": [");
    for (size_t i = 0; i < top_paths; i++) {
        fprintf(f, "%s\n    {\"path\": ", i ? "," : "");
        json_str(f, tp[i].key);
        fprintf(f, ", \"requests\": %llu, \"bytes\": %llu}", (unsigned long long)tp[i].count,
                (unsigned long long)tp[i].bytes);
    }
    fprintf(f, "%s],\n  \"top_ips\": [", top_paths ? "\n  " : "");
    for (size_t i = 0; i < top_ips; i++) {
        fprintf(f, "%s\n    {\"ip\": ", i ? "," : "");
        json_str(f, ti[i].key);
        fprintf(f, ", \"requests\": %llu, \"bytes\": %llu}", (unsigned long long)ti[i].count,
                (unsigned long long)ti[i].bytes);
    }
    fprintf(f, "%s]\n}\n", top_ips ? "\n  " : "");
    if (ferror(f) | (fclose(f) != 0)) {
        job_fail("logagg", "cannot write", out_path);
        return JOB_EXIT_ERROR;
    }

    printf("logagg: %s: %llu lines, %llu parsed, %llu malformed, %llu bytes, %zu ips, %zu paths, "
           "error rate %.4f\n",
           name, (unsigned long long)lines, (unsigned long long)parsed, (unsigned long long)malformed,
           (unsigned long long)bytes_total, n_ips, n_paths, error_rate);
    for (size_t i = 0; i < top_paths && i < 3; i++)
        printf("  top path %zu: %s (%llu requests)\n", i + 1, tp[i].key, (unsigned long long)tp[i].count);
    printf("wrote summary.json\n");
    return job_finish("logagg");
}
