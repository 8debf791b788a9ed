/* C reference for `gpubench calibrate memtier`: STREAM triad (plain and streaming stores) and a
 * dependent-load pointer chase, built the same way as gpubench's numba kernels so that the two can
 * be compared like with like.
 *
 *   cc -O3 -fopenmp -march=native memtier_ref.c -o memtier_ref
 *   ./memtier_ref ARRAY_BYTES CHASE_BYTES SEED HUGEPAGES
 *
 * Memory: anonymous mmap, madvise(MADV_HUGEPAGE) when HUGEPAGES is 1, first touch from the OpenMP
 * threads (static schedule) before anything is timed. Memory policy and CPU affinity are inherited
 * from the parent process. Prints "ready a=ADDR b=ADDR c=ADDR chase=ADDR threads=N" and
 * "streaming VARIANT", then answers one line per command read from stdin:
 *   triad plain K | triad streaming K   -> best seconds of K passes of a = b + q*c
 *   chase HOPS CPU                     -> seconds for HOPS dependent loads on CPU (-1: any of the
 *                                         inherited set); the walk continues where it stopped
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mman.h>
#include <time.h>
#include <omp.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#define BLOCK 8 /* doubles per 64-byte line */
#define WORDS_PER_LINE 8

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void *map(size_t bytes, int hugepages) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) { perror("mmap"); exit(2); }
#ifdef MADV_HUGEPAGE
    if (hugepages) madvise(p, bytes, MADV_HUGEPAGE);
#endif
    return p;
}

static void chunk(size_t nblocks, size_t *lo, size_t *hi) {
    int t = omp_get_thread_num(), nt = omp_get_num_threads();
    *lo = nblocks * t / nt * BLOCK;
    *hi = nblocks * (t + 1) / nt * BLOCK;
}

static void triad_plain(double *restrict a, const double *restrict b, const double *restrict c, double q, size_t n) {
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) a[i] = b[i] + q * c[i];
}

#if defined(__AVX512F__)
#define STREAMING "avx512 _mm512_stream_pd"
#elif defined(__AVX__)
#define STREAMING "avx _mm256_stream_pd"
#elif defined(__SSE2__)
#define STREAMING "sse2 _mm_stream_pd"
#else
#define STREAMING "none (plain stores: no streaming-store intrinsic for this CPU)"
#endif

static void triad_streaming(double *restrict a, const double *restrict b, const double *restrict c, double q, size_t n) {
    size_t nblocks = n / BLOCK;
    #pragma omp parallel
    {
        size_t lo, hi;
        chunk(nblocks, &lo, &hi);
#if defined(__AVX512F__)
        __m512d vq = _mm512_set1_pd(q);
        for (size_t i = lo; i < hi; i += 8)
            _mm512_stream_pd(a + i, _mm512_add_pd(_mm512_loadu_pd(b + i), _mm512_mul_pd(vq, _mm512_loadu_pd(c + i))));
        _mm_sfence();
#elif defined(__AVX__)
        __m256d vq = _mm256_set1_pd(q);
        for (size_t i = lo; i < hi; i += 4)
            _mm256_stream_pd(a + i, _mm256_add_pd(_mm256_loadu_pd(b + i), _mm256_mul_pd(vq, _mm256_loadu_pd(c + i))));
        _mm_sfence();
#elif defined(__SSE2__)
        __m128d vq = _mm_set1_pd(q);
        for (size_t i = lo; i < hi; i += 2)
            _mm_stream_pd(a + i, _mm_add_pd(_mm_loadu_pd(b + i), _mm_mul_pd(vq, _mm_loadu_pd(c + i))));
        _mm_sfence();
#else
        for (size_t i = lo; i < hi; i++) a[i] = b[i] + q * c[i];
#endif
    }
    for (size_t i = nblocks * BLOCK; i < n; i++) a[i] = b[i] + q * c[i];
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The same approach as gpubench: a random order of all lines, each line pointing at the next and
 * the last at the first, so one walk of n_lines hops visits every line once. */
static uint64_t build_chase(uint64_t *next, size_t n_lines, uint64_t seed) {
    uint64_t *order = malloc(n_lines * sizeof *order);
    if (!order) { perror("malloc"); exit(2); }
    for (size_t i = 0; i < n_lines; i++) order[i] = i * WORDS_PER_LINE;
    for (size_t i = n_lines - 1; i > 0; i--) {
        size_t j = splitmix64(&seed) % (i + 1);
        uint64_t t = order[i]; order[i] = order[j]; order[j] = t;
    }
    for (size_t i = 0; i < n_lines; i++) next[order[i]] = order[(i + 1) % n_lines];
    uint64_t start = order[0];
    free(order);
    return start;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s ARRAY_BYTES CHASE_BYTES SEED HUGEPAGES\n", argv[0]);
        return 2;
    }
    size_t array_bytes = strtoull(argv[1], NULL, 10), chase_bytes = strtoull(argv[2], NULL, 10);
    uint64_t seed = strtoull(argv[3], NULL, 10);
    int hugepages = atoi(argv[4]);
    size_t n = array_bytes / sizeof(double), n_lines = chase_bytes / 64;
    double *a = map(n * sizeof(double), hugepages), *b = map(n * sizeof(double), hugepages), *c = map(n * sizeof(double), hugepages);
    uint64_t *next = map(n_lines * 64, hugepages);
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) { a[i] = 1.0; b[i] = 2.0; c[i] = 0.0; }
    memset(next, 0, n_lines * 64);
    uint64_t position = build_chase(next, n_lines, seed);
    printf("ready a=%p b=%p c=%p chase=%p threads=%d\nstreaming %s\n", (void *)a, (void *)b, (void *)c, (void *)next, omp_get_max_threads(), STREAMING);
    fflush(stdout);

    char line[256], what[64];
    while (fgets(line, sizeof line, stdin)) {
        unsigned long long count;
        int cpu;
        if (sscanf(line, "triad %63s %llu", what, &count) == 2) {
            int streaming = strcmp(what, "streaming") == 0;
            double best = 1e300;
            for (unsigned long long k = 0; k < count; k++) {
                double t0 = now();
                if (streaming) triad_streaming(a, b, c, 3.0, n); else triad_plain(a, b, c, 3.0, n);
                double dt = now() - t0;
                if (dt < best) best = dt;
            }
            printf("%.9f %.17g\n", best, a[n / 2]);
        } else if (sscanf(line, "chase %llu %d", &count, &cpu) == 2) {
            cpu_set_t before, one;
            sched_getaffinity(0, sizeof before, &before);
            if (cpu >= 0) {
                CPU_ZERO(&one);
                CPU_SET(cpu, &one);
                sched_setaffinity(0, sizeof one, &one);
            }
            double t0 = now();
            uint64_t p = position;
            for (unsigned long long h = 0; h < count; h++) p = next[p];
            double dt = now() - t0;
            position = p;
            sched_setaffinity(0, sizeof before, &before);
            printf("%.9f %llu\n", dt, (unsigned long long)p);
        } else if (strncmp(line, "quit", 4) == 0) {
            break;
        } else {
            printf("error unknown command\n");
        }
        fflush(stdout);
    }
    return 0;
}
