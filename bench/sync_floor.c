// The synchronisation floor of K-rank data parallelism on this host (BENCHMARKS.md, "Targets"): the model's eight
// GEMMs and SGD update for B=64, timed per step five ways over 1000 steps, each repetition:
//   allreduce path    compute, MPI_Allreduce of the 235,146 gradients, SGD            (what --no-shared-memory does)
//   shm-shard path    compute into a shared slot, barrier, sharded update of shared parameters, barrier
//   shard-reduce      compute into a shared slot, barrier, sum own half into shared sums, barrier, private SGD
//                     (what the default shared-memory reduction does)
//   compute+barrier   compute, MPI_Barrier (no data at all), SGD: what lockstep alone costs
//   compute only      compute and SGD, no synchronisation
// Build and run (not part of the package):
//   mpicc -O2 -march=native bench/sync_floor.c -o /tmp/sync_floor -lopenblas
//   OMPI_MCA_mpi_yield_when_idle=1 mpirun -np 2 /tmp/sync_floor
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cblas.h>
static void sgd(float* restrict w,const float* restrict g,float* restrict v,long n,float lr,float wd,float mu){
 for(long i=0;i<n;i++){float d=g[i]+wd*w[i];float vel=mu*v[i]+d;v[i]=vel;w[i]=w[i]-lr*vel;}}
float *X,*W1,*W2,*W3,*H1,*H2,*O,*dO,*dH2,*dH1;
static void compute(float*g,const float*w){ // the model's 8 GEMMs, B=64
 const float*w1=w,*w2=w+200704+256,*w3=w2+32768+128; float*g1=g,*g2=g+200704+256,*g3=g2+32768+128;
 cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,64,256,784,1,X,784,w1,784,0,H1,256);
 cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,64,128,256,1,H1,256,w2,256,0,H2,128);
 cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasTrans,64,10,128,1,H2,128,w3,128,0,O,10);
 cblas_sgemm(CblasRowMajor,CblasTrans,CblasNoTrans,10,128,64,1,dO,10,H2,128,0,g3,128);
 cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,64,128,10,1,dO,10,w3,128,0,dH2,128);
 cblas_sgemm(CblasRowMajor,CblasTrans,CblasNoTrans,128,256,64,1,dH2,128,H1,256,0,g2,256);
 cblas_sgemm(CblasRowMajor,CblasNoTrans,CblasNoTrans,64,256,128,1,dH2,128,w2,256,0,dH1,256);
 cblas_sgemm(CblasRowMajor,CblasTrans,CblasNoTrans,256,784,64,1,dH1,256,X,784,0,g1,784);}
static void upd(const float*restrict a,const float*restrict b,float*restrict w,float*restrict m,long n){
 if(b){for(long j=0;j<n;j++){float s=a[j]+b[j];float d=s+5e-4f*w[j];float vel=0.9f*m[j]+d;m[j]=vel;w[j]-=0.01f*vel;}}
 else {for(long j=0;j<n;j++){float s=a[j];float d=s+5e-4f*w[j];float vel=0.9f*m[j]+d;m[j]=vel;w[j]-=0.01f*vel;}}}
int main(int c,char**v){MPI_Init(&c,&v);int r,k;MPI_Comm_rank(MPI_COMM_WORLD,&r);MPI_Comm_size(MPI_COMM_WORLD,&k);
 openblas_set_num_threads(1);
 long n=235146; X=calloc(64*784,4);H1=calloc(64*256,4);H2=calloc(64*128,4);O=calloc(640,4);dO=calloc(640,4);dH2=calloc(64*128,4);dH1=calloc(64*256,4);
 for(int i=0;i<64*784;i++)X[i]=(i%7)*0.1f; for(int i=0;i<640;i++)dO[i]=0.01f*(i%5);
 float*w=calloc(n,4),*g=calloc(n,4),*m=calloc(n,4);
 // shared: per-rank gradient segment + shared params + shared momentum
 MPI_Comm node; MPI_Comm_split_type(MPI_COMM_WORLD,MPI_COMM_TYPE_SHARED,0,MPI_INFO_NULL,&node);
 long seg=(n+15)/16*16; MPI_Win win; float*mine;
 MPI_Win_allocate_shared((r==0? (3+k)*seg:k*0+seg)*4,4,MPI_INFO_NULL,node,&mine,&win);
 float* segs[8]; for(int q=0;q<k;q++){MPI_Aint sz;int du;MPI_Win_shared_query(win,q,&sz,&du,&segs[q]);}
 float*sw=segs[0]+seg*1, *sm=segs[0]+seg*2, *red=segs[0]+seg*3; // rank0's segment holds grads + params + momentum
 // rank 0 segment: [grad0 | params | momentum]; others: [grad_r]
 if(r==0){memset(sw,0,seg*4);memset(sm,0,seg*4);} MPI_Barrier(node);
 long shard=(n+k-1)/k; long lo=r*shard, hi=lo+shard<n?lo+shard:n;
 for(int rep=0;rep<5;rep++){
  int it=1000; MPI_Barrier(MPI_COMM_WORLD); double a=MPI_Wtime();
  for(int i=0;i<it;i++){compute(g,w);MPI_Allreduce(MPI_IN_PLACE,g,n,MPI_FLOAT,MPI_SUM,MPI_COMM_WORLD);sgd(w,g,m,n,0.01f,5e-4f,0.9f);}
  double ta=MPI_Wtime()-a; MPI_Barrier(MPI_COMM_WORLD); a=MPI_Wtime();
  double b1=0,u=0,b2=0,c0=0;
  for(int i=0;i<it;i++){double q0=MPI_Wtime();compute(segs[r],sw);double q1=MPI_Wtime();MPI_Barrier(node);double q2=MPI_Wtime();
    upd(segs[0]+lo,k>1?segs[1]+lo:0,sw+lo,sm+lo,hi-lo);double q3=MPI_Wtime();
    MPI_Barrier(node);double q4=MPI_Wtime();c0+=q1-q0;b1+=q2-q1;u+=q3-q2;b2+=q4-q3;}
  double ts=MPI_Wtime()-a;if(0)printf("rank %d: compute %.0f barrier1 %.0f update %.0f barrier2 %.0f us\n",r,c0/it*1e6,b1/it*1e6,u/it*1e6,b2/it*1e6);
  MPI_Barrier(MPI_COMM_WORLD); a=MPI_Wtime();
  for(int i=0;i<it;i++){compute(segs[r],w);MPI_Barrier(node);
    if(k>1){for(long j=lo;j<hi;j++) red[j]=segs[0][j]+segs[1][j];} else memcpy(red,segs[0],n*4);
    MPI_Barrier(node); sgd(w,red,m,n,0.01f,5e-4f,0.9f);}
  double tr=MPI_Wtime()-a; if(r==0)printf("K=%d shard-reduce+private sgd %.1f us -> %.0f\n",k,tr/it*1e6,64.0*k*it/tr);
  MPI_Barrier(MPI_COMM_WORLD); a=MPI_Wtime();
  for(int i=0;i<it;i++){compute(g,w);MPI_Barrier(node);sgd(w,g,m,n,0.01f,5e-4f,0.9f);}
  double tb=MPI_Wtime()-a; if(r==0)printf("K=%d compute+barrier+sgd %.1f us -> %.0f\n",k,tb/it*1e6,64.0*k*it/tb);
  MPI_Barrier(MPI_COMM_WORLD); a=MPI_Wtime();
  for(int i=0;i<it;i++){compute(g,w);sgd(w,g,m,n,0.01f,5e-4f,0.9f);}
  double tc=MPI_Wtime()-a;
  if(r==0)printf("K=%d per step: allreduce path %.1f us  shm-shard path %.1f us  compute only %.1f us  -> samples/s %.0f %.0f %.0f\n",k,ta/it*1e6,ts/it*1e6,tc/it*1e6,64.0*k*it/ta,64.0*k*it/ts,64.0*k*it/tc);}
 MPI_Finalize();}
