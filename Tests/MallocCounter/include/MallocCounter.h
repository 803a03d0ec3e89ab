// A preloadable allocation counter for the test that checks the steady-state training step allocates nothing.
// Loaded with LD_PRELOAD, it forwards every allocation to glibc and counts those made on the main thread (the
// training loop's; MPI's and the watchdog's threads wake on timers and would make the count depend on timing).
// At exit it prints "ddp-malloc-counter: N" to standard error. Not linked into ddp-train.
#ifndef DDP_MALLOC_COUNTER_H
#define DDP_MALLOC_COUNTER_H
#endif
