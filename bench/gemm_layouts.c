// The two largest GEMMs of the step in other layouts, timed interleaved (1,500 alternating calls, medians):
// dW0 as TN (what the trainer does) against transposing dy and NN; the forward as NT (W stored [out, in], what the
// trainer does) against NN with W stored transposed. None was faster here. Not part of the package:
//   gcc -O2 bench/gemm_layouts.c -o /tmp/gemm_layouts -lopenblas && /tmp/gemm_layouts
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void transpose(const float*src,int rows,int cols,float*dst){
  for(int r0=0;r0<rows;r0+=8) for(int c=0;c<cols;c++) for(int r=r0;r<r0+8&&r<rows;r++) dst[c*rows+r]=src[r*cols+c];}
static int cmp(const void*a,const void*b){double x=*(double*)a,y=*(double*)b;return x<y?-1:x>y;}
int main(){
 float*dy=malloc(4*64*256),*dyT=malloc(4*64*256),*x=malloc(4*64*784),*g=calloc(256*784,4),*w=malloc(4*256*784),*y=malloc(4*64*256),*wt=malloc(4*256*784);
 for(int i=0;i<64*256;i++)dy[i]=(i%17)*.01f; for(int i=0;i<64*784;i++)x[i]=(i%5)*.1f; for(int i=0;i<256*784;i++){w[i]=(i%11)*.01f;}
 transpose(w,256,784,wt);
 enum{R=1500}; static double ta[R],tb[R],tc[R],td[R];
 for(int i=0;i<R;i++){
  double t0=now(); cblas_sgemm(CblasRowMajor,CblasTrans,CblasNoTrans,256,784,64,1,dy,256,x,784,1,g,784); ta[i]=now()-t0;
  t0=now(); transpose(dy,64,256,dyT); cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,256,784,64,1,dyT,64,x,784,1,g,784); tb[i]=now()-t0;
  t0=now(); cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,64,256,784,1,x,784,w,784,0,y,256); tc[i]=now()-t0;
  t0=now(); cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,64,256,784,1,x,784,wt,256,0,y,256); td[i]=now()-t0;
 }
 qsort(ta,R,8,cmp);qsort(tb,R,8,cmp);qsort(tc,R,8,cmp);qsort(td,R,8,cmp);
 printf("%s dW0: TN %.0f us | transpose+NN %.0f us ; fwd0: NT %.0f us | NN(W^T stored) %.0f us\n",openblas_get_corename(),ta[R/2]*1e6,tb[R/2]*1e6,tc[R/2]*1e6,td[R/2]*1e6);
}
