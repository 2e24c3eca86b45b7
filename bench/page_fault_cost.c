// What one page fault costs on this machine (issue 13's start-up: a `run -q -- true` takes ~690
// minor faults, bwrap's typical profile ~400, `setpriv env /bin/true` ~210). No agentbox code.
// Each round maps PAGES fresh pages three ways and writes one byte to each page:
//   anon      private anonymous memory, one fault per page (the heap, the stack, after clone)
//   cow       a private mapping of FILE, one copy-on-write fault per page (what the dynamic
//             linker's relocations do to a PIE's .data.rel.ro before `main`)
//   populate  private anonymous memory populated by one madvise(MADV_POPULATE_WRITE) first: the
//             same pages allocated and zeroed without a fault each (Linux 5.14+)
// Prints the median microseconds per page of each over ROUNDS rounds. With THP the first touch
// of an anonymous range may take a whole huge page: MADV_NOHUGEPAGE keeps it to 4 KiB pages.
//
//   cc -O2 -o /tmp/page_fault_cost bench/page_fault_cost.c &&
//   /tmp/page_fault_cost FILE [ROUNDS] [PAGES]     (FILE at least PAGES * 4 KiB long)
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int by_value(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

// Microseconds per page to write one byte into each page of a fresh mapping.
static double touch(int fd, size_t pages, int populate) {
  size_t len = pages * 4096;
  int flags = MAP_PRIVATE | (fd < 0 ? MAP_ANONYMOUS : 0);
  char* p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, fd, 0);
  if (p == MAP_FAILED) {
    perror("mmap");
    exit(1);
  }
  (void)madvise(p, len, MADV_NOHUGEPAGE);
  double t0 = now_us();
  if (populate && madvise(p, len, MADV_POPULATE_WRITE) != 0) {
    perror("madvise(MADV_POPULATE_WRITE)");
    exit(1);
  }
  for (size_t i = 0; i < len; i += 4096) {
    p[i] = 1;
  }
  double per_page = (now_us() - t0) / (double)pages;
  munmap(p, len);
  return per_page;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s FILE [ROUNDS] [PAGES]\n", argv[0]);
    return 2;
  }
  int rounds = argc > 2 ? atoi(argv[2]) : 50;
  size_t pages = argc > 3 ? (size_t)atol(argv[3]) : 100;
  int fd = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (fd < 0 || rounds < 1 || pages < 1 || lseek(fd, 0, SEEK_END) < (off_t)(pages * 4096)) {
    fprintf(stderr, "%s: FILE must be readable and at least PAGES * 4 KiB long\n", argv[0]);
    return 2;
  }
  double* v[3];
  for (int k = 0; k < 3; ++k) {
    v[k] = calloc((size_t)rounds, sizeof(double));
  }
  for (int r = 0; r < rounds; ++r) {  // interleaved, the order rotating
    for (int j = 0; j < 3; ++j) {
      int k = (r + j) % 3;
      v[k][r] = k == 0 ? touch(-1, pages, 0) : k == 1 ? touch(fd, pages, 0) : touch(-1, pages, 1);
    }
  }
  const char* names[3] = {"anon", "cow", "populate"};
  printf("page_fault_cost: %d rounds of %zu pages, median us per page\n", rounds, pages);
  for (int k = 0; k < 3; ++k) {
    qsort(v[k], (size_t)rounds, sizeof(double), by_value);
    printf("  %-9s %7.2f\n", names[k], v[k][rounds / 2]);
  }
  return 0;
}
