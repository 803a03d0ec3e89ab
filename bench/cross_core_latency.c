// Cache-line ping-pong between CPU 0 and CPU 1: the round-trip time of one line between the two cores, printed
// every 200 ms for SECONDS (default 5). On a VM it shows where the hypervisor has put the two vCPUs: ~60 ns when
// they share an L3 (one CCX of an AMD EPYC), ~330 ns when they do not, switching within seconds (BENCHMARKS.md).
//
//   cc -O2 -pthread bench/cross_core_latency.c -o /tmp/cross_core_latency && /tmp/cross_core_latency 5
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static _Atomic int flag __attribute__((aligned(64)));
static _Atomic int stop;
static double now(void){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
static void pin(int c){cpu_set_t s;CPU_ZERO(&s);CPU_SET(c,&s);pthread_setaffinity_np(pthread_self(),sizeof s,&s);}
static void *pong(void *a){pin(1);while(!atomic_load(&stop)){int v=atomic_load_explicit(&flag,memory_order_acquire);if(v&1)atomic_store_explicit(&flag,v+1,memory_order_release);}return 0;}
int main(int argc,char**argv){double seconds=argc>1?atof(argv[1]):5;pin(0);pthread_t t;pthread_create(&t,0,pong,0);
 double end=now()+seconds;
 while(now()<end){double t0=now();int n=0;while(now()-t0<0.2){for(int i=0;i<1000;i++){int v=atomic_load(&flag);atomic_store_explicit(&flag,v+1,memory_order_release);while(atomic_load_explicit(&flag,memory_order_acquire)==v+1);}n+=1000;}
  printf("%.0f ns/round-trip\n",(now()-t0)/n*1e9);fflush(stdout);}
 atomic_store(&stop,1);pthread_join(t,0);return 0;}
