// A preloadable allocation counter for the test that checks the steady-state training step allocates nothing.
// Loaded with LD_PRELOAD, it forwards every allocation to glibc and counts those made on the main thread (the
// training loop's; MPI's and the watchdog's threads wake on timers and would make the count depend on timing).
// It also interposes cblas_sgemm and counts what OpenBLAS allocates inside it apart: OpenBLAS's SkylakeX and
// Cooperlake small-matrix kernels call malloc on every call, which is the library's, not ddp-train's.
// At exit it prints "ddp-malloc-counter: N" (ddp-train's own) and "ddp-malloc-counter-blas: M" (inside
// cblas_sgemm) to standard error. Not linked into ddp-train.
#ifndef DDP_MALLOC_COUNTER_H
#define DDP_MALLOC_COUNTER_H
#endif
