// Two ways for two cores to sum a gradient through shared memory, timed per step: the one-line answer to why
// SharedMemoryPairReducer streams its slots (Note [Streaming between two cores]). Two threads pinned to CPU 0 and
// CPU 1 each do some local work (a stand-in for the forward and backward), then exchange a 235,152-float gradient
// (the MLP's) by one of:
//   1  SharedMemoryReducer: write the slot, barrier, sum my half into shared sums, barrier, read all the sums;
//   2  one barrier, ordinary stores: write the slot, barrier, read the other's whole slot;
//   3  SharedMemoryPairReducer: gradient in private memory, non-temporal copy into the slot, barrier, read the
//      other's whole slot;
//   4  no exchange (one core's own write and read of its gradient), the floor.
// Prints the step and the exchange's ms per step on each thread. Run it beside bench/cross_core_latency.c: on a VM
// whose vCPUs sit sometimes near (~60 ns round trip) and sometimes far (~330 ns) apart, 1 and 2 cost ~0.1 ms near
// and ~0.6 ms far, 3 ~0.15 ms either way (BENCHMARKS.md).
//
//   cc -O3 -march=native -pthread bench/pair_exchange.c -o /tmp/pair_exchange
//   for s in 4 1 2 3; do /tmp/pair_exchange $s; done
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#define N 235152
static float *slot[2][2], *sums, *priv[2], *out[2], *work[2];
static _Atomic long arrive[2] __attribute__((aligned(64)));
static _Atomic long doneread[2] __attribute__((aligned(64)));
static int strategy, steps = 3000;
static double tstart[2], tex[2];
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);pthread_setaffinity_np(pthread_self(),sizeof s,&s);}
static void waitge(_Atomic long *f, long v){while(atomic_load_explicit(f,memory_order_acquire)<v)_mm_pause();}
static _Atomic long bar __attribute__((aligned(64)));
static void barrier(long *gen){ long g=++*gen; atomic_fetch_add(&bar,1); while(atomic_load_explicit(&bar,memory_order_acquire)<2*g)_mm_pause(); }
static void compute(int r){ // local work on a private 1.6 MB buffer
  float *w=work[r]; for(int rep=0;rep<6;rep++) for(int i=0;i<400000;i+=16){ __m512 a=_mm512_load_ps(w+i); a=_mm512_fmadd_ps(a,a,a); _mm512_store_ps(w+i,a);} }
static void *run(void *arg){ int r=(int)(long)arg; pin(r); long gen=0; int p=1-r; double ex=0; double t0=now();
  for(int s=0;s<steps;s++){
    int b = (strategy==1)? 0 : (s&1);
    compute(r);
    double e0=now();
    if(strategy==1){ // today: write slot, barrier, sum my half into shared sums, barrier, read all sums
      memset(slot[0][r],0,N*4); for(int i=0;i<N;i++) slot[0][r][i]=(float)(i+s); 
      barrier(&gen); int lo=r*N/2, hi=(r+1)*N/2; for(int i=lo;i<hi;i++) sums[i]=slot[0][0][i]+slot[0][1][i];
      barrier(&gen); for(int i=0;i<N;i++) out[r][i]=sums[i]*0.5f+out[r][i];
    } else if(strategy==2){ // one barrier: read peer's full slot; done-read flag checked before rewriting own slot
      waitge(&doneread[p], s); memset(slot[0][r],0,N*4); for(int i=0;i<N;i++) slot[0][r][i]=(float)(i+s);
      atomic_store_explicit(&arrive[r],s+1,memory_order_release); waitge(&arrive[p],s+1);
      for(int i=0;i<N;i++) out[r][i]=(slot[0][0][i]+slot[0][1][i])*0.5f+out[r][i];
      atomic_store_explicit(&doneread[r],s+1,memory_order_release);
    } else if(strategy==3){ // private gradient, NT-store copy into the slot, one barrier, read peer's slot
      for(int i=0;i<N;i++) priv[r][i]=(float)(i+s);
      waitge(&doneread[p], s);
      for(int i=0;i<N;i+=16) _mm512_stream_ps(slot[0][r]+i,_mm512_load_ps(priv[r]+i)); _mm_sfence();
      atomic_store_explicit(&arrive[r],s+1,memory_order_release); waitge(&arrive[p],s+1);
      for(int i=0;i<N;i++) out[r][i]=(priv[r][i]+slot[0][p][i])*0.5f+out[r][i];
      atomic_store_explicit(&doneread[r],s+1,memory_order_release);
    } else if(strategy==4){ // local only (K=1 reference): write gradient, read it
      memset(priv[r],0,N*4); for(int i=0;i<N;i++) priv[r][i]=(float)(i+s);
      for(int i=0;i<N;i++) out[r][i]=priv[r][i]*0.5f+out[r][i];
    }
    ex+=now()-e0;
  }
  tex[r]=ex/steps; tstart[r]=(now()-t0)/steps; return 0; }
int main(int argc,char**argv){ if(argc<2){fprintf(stderr,"usage: %s 1|2|3|4\n",argv[0]);return 2;} strategy=atoi(argv[1]);
  for(int a=0;a<2;a++)for(int r=0;r<2;r++) slot[a][r]=aligned_alloc(64,N*4+64);
  sums=aligned_alloc(64,N*4+64); for(int r=0;r<2;r++){priv[r]=aligned_alloc(64,N*4+64);out[r]=aligned_alloc(64,N*4+64);work[r]=aligned_alloc(64,1600064);memset(out[r],0,N*4);memset(work[r],0,1600000);memset(priv[r],0,N*4);} memset(sums,0,N*4);
  for(int a=0;a<2;a++)for(int r=0;r<2;r++)memset(slot[a][r],0,N*4);
  pthread_t t[2]; for(long r=0;r<2;r++)pthread_create(&t[r],0,run,(void*)r); for(int r=0;r<2;r++)pthread_join(t[r],0);
  printf("strategy %d: step %.3f ms, exchange %.3f / %.3f ms\n",strategy,tstart[0]*1e3,tex[0]*1e3,tex[1]*1e3); return 0; }
