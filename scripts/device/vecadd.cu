// A CUDA job for the GPU end-to-end check (scripts/device/gpu-e2e.sh): SAXPY over 2^24
// floats on every GPU the container can see, checked against the CPU, with a checksum of
// the result (exact: y = a*x + b with small integers is exact in float32) written to
// /output/result.txt. Prints the devices it sees, so the check can tell that the container
// got the assigned GPU and no other.
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

__global__ void saxpy(int n, float a, const float *x, float *y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] = a * x[i] + y[i];
}

static int check(cudaError_t e, const char *what) {
    if (e != cudaSuccess) {
        fprintf(stderr, "%s: %s\n", what, cudaGetErrorString(e));
        exit(3);
    }
    return 0;
}

int main() {
    int count = 0;
    check(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
    printf("devices visible: %d\n", count);
    for (int d = 0; d < count; d++) {
        cudaDeviceProp p;
        check(cudaGetDeviceProperties(&p, d), "cudaGetDeviceProperties");
        printf("device %d: %s, %zu MiB, sm %d.%d\n", d, p.name, p.totalGlobalMem >> 20, p.major, p.minor);
    }
    const int n = 1 << 24;
    float *x = (float *)malloc(n * sizeof(float)), *y = (float *)malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) { x[i] = (float)(i % 1000); y[i] = (float)(i % 7); }
    float *dx, *dy;
    check(cudaMalloc(&dx, n * sizeof(float)), "cudaMalloc x");
    check(cudaMalloc(&dy, n * sizeof(float)), "cudaMalloc y");
    check(cudaMemcpy(dx, x, n * sizeof(float), cudaMemcpyHostToDevice), "copy x");
    check(cudaMemcpy(dy, y, n * sizeof(float), cudaMemcpyHostToDevice), "copy y");
    saxpy<<<(n + 255) / 256, 256>>>(n, 3.0f, dx, dy);
    check(cudaGetLastError(), "saxpy launch");
    check(cudaMemcpy(y, dy, n * sizeof(float), cudaMemcpyDeviceToHost), "copy back");
    unsigned long long sum = 0;
    long bad = 0;
    for (int i = 0; i < n; i++) {
        float want = 3.0f * (float)(i % 1000) + (float)(i % 7);
        if (y[i] != want) bad++;
        sum += (unsigned long long)y[i];
    }
    printf("saxpy over %d floats: %ld wrong, checksum %llu\n", n, bad, sum);
    FILE *f = fopen("/output/result.txt", "w");
    if (f) { fprintf(f, "n=%d wrong=%ld checksum=%llu\n", n, bad, sum); fclose(f); }
    return bad == 0 ? 0 : 1;
}
