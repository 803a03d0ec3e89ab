// OpenBLAS's cblas.h (found through pkg-config `openblas`, not the generic `blas`), which also declares
// openblas_set_num_threads.
#ifndef COPENBLAS_SHIM_H
#define COPENBLAS_SHIM_H
#include <cblas.h>
#endif
