// Built with: clang --target=wasm32-wasi -O2 -Wl,--strip-all -o trees.wasm trees.c
// (Debian clang + wasi-libc); the executor tests in ../file_trees.rs run it.
// Reads a directory input, writes /tmp and a relative path, echoes stdin, writes /output.
#include <stdio.h>
#include <string.h>
#include <dirent.h>
#include <stdlib.h>

static long copy(FILE *in, FILE *out) {
    char buf[4096]; size_t n; long total = 0;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) { fwrite(buf, 1, n, out); total += n; }
    return total;
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "all";
    if (strcmp(mode, "fill") == 0) {
        FILE *f = fopen("/tmp/big", "w");
        if (!f) { perror("open /tmp/big"); return 2; }
        char block[65536]; memset(block, 'x', sizeof block);
        for (;;) fwrite(block, 1, sizeof block, f);
    }
    FILE *share = fopen("/input/share/db/a.txt", "r");
    if (!share) { perror("open /input/share/db/a.txt"); return 10; }
    char line[256] = {0};
    fgets(line, sizeof line, share); fclose(share);
    printf("share: %s", line);
    FILE *ro = fopen("/input/share/new.txt", "w");
    printf("input writable: %s\n", ro ? "yes" : "no");
    FILE *seed = fopen("conf/settings.ini", "r");
    if (!seed) { perror("open conf/settings.ini"); return 11; }
    fgets(line, sizeof line, seed); fclose(seed);
    printf("workdir: %s", line);
    FILE *tmp = fopen("/tmp/scratch.txt", "w");
    if (!tmp) { perror("open /tmp/scratch.txt"); return 12; }
    fputs("temporary\n", tmp); fclose(tmp);
    FILE *rel = fopen("relative.txt", "w");
    if (!rel) { perror("open relative.txt"); return 13; }
    fputs("relative\n", rel); fclose(rel);
    rel = fopen("/relative.txt", "r");
    if (!rel) { perror("reopen /relative.txt"); return 14; }
    fgets(line, sizeof line, rel); fclose(rel);
    printf("relative: %s", line);
    FILE *out = fopen("/output/stdin.txt", "w");
    if (!out) { perror("open /output/stdin.txt"); return 15; }
    long n = copy(stdin, out); fclose(out);
    printf("stdin bytes: %ld\n", n);
    DIR *d = opendir("/input/share");
    int entries = 0; struct dirent *e;
    while (d && (e = readdir(d))) if (e->d_name[0] != '.') entries++;
    if (d) closedir(d);
    printf("share entries: %d\n", entries);
    return 0;
}
