// Times one sample's convolution and pooling kernels (Sources/CKernels) on the default CNN's shapes: the C
// micro-benchmark behind BENCHMARKS.md's figures for im2col, col2im, max pooling, bias and channel sums, and the
// Winograd transforms of the CNN's and the 5×5 example's second convolutions (one group of eight samples, 128
// columns; per sample).
//
//   clang -O2 -I Sources/CKernels/include bench/conv_kernels.c Sources/CKernels/Kernels.c \
//     Sources/CKernels/Winograd.c -o /tmp/conv_kernels
//   /tmp/conv_kernels
#include "Kernels.h"
#include "Winograd.h"
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
  // Winograd's four transforms for one group of eight 14×14 samples (16 tiles each, 128 columns): the CNN's second
  // convolution (3×3, 32 → 64, padding 1) and the README example's second (5×5, 16 → 32, padding 2).
  float *dy=calloc(64*64*196,4);
  for(int i=0;i<64*64*196;i++) dy[i]=rand()/(float)RAND_MAX-0.5f;
  int shapes[2][4]={{3,32,64,1},{5,16,32,2}};
  for(int s=0;s<2;s++){
    int k=shapes[s][0], c=shapes[s][1], o=shapes[s][2], pad=shapes[s][3];
    ptrdiff_t side=ddp_winograd_tile_side(k), ld=128, pin=ddp_winograd_plane_stride(c,ld), pout=ddp_winograd_plane_stride(o,ld);
    float *v=calloc(side*side*pin,4), *m=calloc(side*side*pout,4), *scratch=calloc(ddp_winograd_scratch_floats(4,4,k),4);
    t=now(); for(int r=0;r<R;r++) ddp_winograd_transform_input(v,ld,pin,x+(r%8)*8*c*196,8,c,14,14,pad,k,4,4,scratch); printf("winograd %dx%d input %.1f us per sample\n",k,k,(now()-t)/R/8*1e6);
    t=now(); for(int r=0;r<R;r++) ddp_winograd_transform_output(y+(r%8)*8*o*196,m,ld,8,b,o,14,14,k,4,4,1,scratch); printf("winograd %dx%d output %.1f us per sample\n",k,k,(now()-t)/R/8*1e6);
    t=now(); for(int r=0;r<R;r++) ddp_winograd_transform_output_gradient(m,ld,dy+(r%8)*8*o*196,8,o,14,14,k,4,4,scratch); printf("winograd %dx%d output gradient %.1f us per sample\n",k,k,(now()-t)/R/8*1e6);
    t=now(); for(int r=0;r<R;r++) ddp_winograd_transform_input_gradient(x+(r%8)*8*c*196,v,ld,pin,8,c,14,14,pad,k,4,4,scratch); printf("winograd %dx%d input gradient %.1f us per sample\n",k,k,(now()-t)/R/8*1e6);
    free(v); free(m); free(scratch);
  }
  t=now(); for(int r=0;r<R;r++) ddp_accumulate_channel_sums(b,dy+(r%64)*64*196,64,196); printf("chansum conv2 %.1f us\n",(now()-t)/R*1e6);
  return 0;}
