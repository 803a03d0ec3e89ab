// One core's cblas_sgemm peak on a 1024³ product, best of 7 (BENCHMARKS.md, "Targets"): what the kernels OpenBLAS
// picked can do at most. Not part of the package:
//   gcc -O2 bench/gemm_peak.c -o /tmp/gemm_peak -lopenblas && /tmp/gemm_peak && OPENBLAS_CORETYPE=Cooperlake /tmp/gemm_peak
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){int n=1024; float*a=malloc(4*n*n),*b=malloc(4*n*n),*c=malloc(4*n*n); for(int i=0;i<n*n;i++){a[i]=i%7*.1f;b[i]=i%5*.1f;}
 openblas_set_num_threads(1); double best=1e9; for(int r=0;r<7;r++){double t0=now(); cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,n,n,n,1,a,n,b,n,0,c,n); double t=now()-t0; if(t<best)best=t;}
 printf("%s 1024^3: %.1f GFLOP/s\n",openblas_get_corename(),2.0*n*n*n/best/1e9);}
