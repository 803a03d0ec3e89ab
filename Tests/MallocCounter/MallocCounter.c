#define _GNU_SOURCE
#include "MallocCounter.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

// glibc's own entry points, so that forwarding needs no dlsym (which itself allocates).
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);

static atomic_long mainThreadAllocations;
// Those made inside OpenBLAS's cblas_sgemm, counted apart: the guarantee covers ddp-train's own code (see the
// header). Only the main thread reads and writes it.
static atomic_long blasAllocations;
static int insideBLAS;

static void count(void) {
  if (syscall(SYS_gettid) != getpid()) return;
  atomic_fetch_add_explicit(insideBLAS ? &blasAllocations : &mainThreadAllocations, 1, memory_order_relaxed);
}

// cblas_sgemm, interposed: ddp-train calls OpenBLAS's through the dynamic linker, which finds this one first.
// The enums and blasint of OpenBLAS's cblas.h are ints in Debian's (LP64) build.
typedef void (*sgemm_function)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                               float *, int);
static sgemm_function real_sgemm;

__attribute__((constructor)) static void find_real_sgemm(void) {
  real_sgemm = (sgemm_function)dlsym(RTLD_NEXT, "cblas_sgemm");
}

void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, const float *a, int lda,
                 const float *b, int ldb, float beta, float *c, int ldc) {
  insideBLAS += 1;
  real_sgemm(order, transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
  insideBLAS -= 1;
}

void *malloc(size_t size) {
  count();
  return __libc_malloc(size);
}

void *calloc(size_t count_, size_t size) {
  count();
  return __libc_calloc(count_, size);
}

void *realloc(void *pointer, size_t size) {
  count();
  return __libc_realloc(pointer, size);
}

int posix_memalign(void **result, size_t alignment, size_t size) {
  count();
  void *pointer = __libc_memalign(alignment, size);
  if (pointer == NULL && size != 0) return ENOMEM;
  *result = pointer;
  return 0;
}

void *aligned_alloc(size_t alignment, size_t size) {
  count();
  return __libc_memalign(alignment, size);
}

void *memalign(size_t alignment, size_t size) {
  count();
  return __libc_memalign(alignment, size);
}

__attribute__((destructor)) static void report(void) {
  char line[128];
  int length = snprintf(line, sizeof line, "ddp-malloc-counter: %ld\nddp-malloc-counter-blas: %ld\n",
                        atomic_load(&mainThreadAllocations), atomic_load(&blasAllocations));
  if (length > 0) (void)!write(STDERR_FILENO, line, (size_t)length);
}
