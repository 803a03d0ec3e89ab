// Times one sample's convolution and pooling kernels (Sources/CKernels) on the default CNN's shapes: the C
// micro-benchmark behind BENCHMARKS.md's figures for im2col, col2im, max pooling, bias and channel sums, and the
// Winograd transforms of the second convolution (groups of eight samples of a 512-column chunk, rows 528 apart; per sample).
//
//   clang -O2 -I Sources/CKernels/include bench/conv_kernels.c Sources/CKernels/Kernels.c \
//     Sources/CKernels/Winograd.c -o /tmp/conv_kernels
//   /tmp/conv_kernels
#include "Kernels.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
int main(){
  float *x=calloc(64*32*14*14,4), *cols=calloc(288*196*4,4), *y=calloc(64*32*28*28,4), *b=calloc(64,4);
  int32_t *am=calloc(64*32*14*14,4);
  for(int i=0;i<64*32*14*14;i++) x[i]=rand()/(float)RAND_MAX-0.5f;
  for(int i=0;i<64*32*28*28;i++) y[i]=rand()/(float)RAND_MAX-0.5f;
  int R=64*20; double t;
  t=now(); for(int r=0;r<R;r++) ddp_im2col(cols,x+(r%64)*32*196,32,14,14,3,1,1,14,14); printf("im2col conv2 %.1f us\n",(now()-t)/R*1e6);
  t=now(); for(int r=0;r<R;r++) ddp_col2im(x+(r%64)*32*196,cols,32,14,14,3,1,1,14,14); printf("col2im conv2 %.1f us\n",(now()-t)/R*1e6);
  t=now(); for(int r=0;r<R;r++) ddp_im2col(cols,y+(r%64)*784,1,28,28,3,1,1,28,28); printf("im2col conv1 %.1f us\n",(now()-t)/R*1e6);
  t=now(); for(int r=0;r<R;r++) ddp_max_pool(x+(r%64)*6272,am,y+(r%64)*25088,32,28,28,2,2,14,14); printf("pool1 %.1f us\n",(now()-t)/R*1e6);
  t=now(); for(int r=0;r<R;r++) ddp_max_pool_backward(y+(r%64)*25088,x+(r%64)*6272,am,NULL,32,28,28,2,2,14,14); printf("pool1 bwd %.1f us\n",(now()-t)/R*1e6);
  t=now(); for(int r=0;r<R;r++) ddp_add_channel_bias(y+(r%64)*25088,b,32,784,1); printf("bias relu conv1 %.1f us\n",(now()-t)/R*1e6);
  t=now(); for(int r=0;r<R;r++) ddp_accumulate_channel_sums(b,y+(r%64)*25088,32,784); printf("chansum conv1 %.1f us\n",(now()-t)/R*1e6);
  float *v=calloc(36*(32*528+16),4), *m=calloc(36*(64*528+16),4), *scratch=calloc(16*18*18,4), *dy=calloc(64*64*196,4);
  for(int i=0;i<64*64*196;i++) dy[i]=rand()/(float)RAND_MAX-0.5f;
  t=now(); for(int r=0;r<R;r++) ddp_winograd_transform_input(v+(r%4)*128,528,x+(r%8)*8*32*196,8,32,14,14,1,4,4,scratch); printf("winograd input conv2 %.1f us per sample\n",(now()-t)/R/8*1e6);
  t=now(); for(int r=0;r<R;r++) ddp_winograd_transform_output(y+(r%8)*8*64*196,m+(r%4)*128,528,8,b,64,14,14,4,4,1,scratch); printf("winograd output conv2 %.1f us per sample\n",(now()-t)/R/8*1e6);
  t=now(); for(int r=0;r<R;r++) ddp_winograd_transform_output_gradient(m+(r%4)*128,528,dy+(r%8)*8*64*196,8,64,14,14,4,4,scratch); printf("winograd output gradient conv2 %.1f us per sample\n",(now()-t)/R/8*1e6);
  t=now(); for(int r=0;r<R;r++) ddp_winograd_transform_input_gradient(x+(r%8)*8*32*196,v+(r%4)*128,528,8,32,14,14,1,4,4,scratch); printf("winograd input gradient conv2 %.1f us per sample\n",(now()-t)/R/8*1e6);
  t=now(); for(int r=0;r<R;r++) ddp_accumulate_channel_sums(b,dy+(r%64)*64*196,64,196); printf("chansum conv2 %.1f us\n",(now()-t)/R*1e6);
  return 0;}
