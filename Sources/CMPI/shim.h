// Open MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are macros that cast the address of an
// incomplete global struct, which Swift cannot import. Each one is wrapped here in a prefixed function.
#ifndef CMPI_SHIM_H
#define CMPI_SHIM_H
#include <mpi.h>

static inline MPI_Comm CMPI_COMM_WORLD(void) { return MPI_COMM_WORLD; }
static inline MPI_Datatype CMPI_FLOAT(void) { return MPI_FLOAT; }
static inline MPI_Datatype CMPI_DOUBLE(void) { return MPI_DOUBLE; }
static inline MPI_Datatype CMPI_BYTE(void) { return MPI_BYTE; }
static inline MPI_Datatype CMPI_INT64(void) { return MPI_INT64_T; }
static inline MPI_Op CMPI_SUM(void) { return MPI_SUM; }
static inline MPI_Op CMPI_MIN(void) { return MPI_MIN; }
static inline MPI_Op CMPI_MAX(void) { return MPI_MAX; }
static inline void *CMPI_IN_PLACE(void) { return MPI_IN_PLACE; }
static inline MPI_Status *CMPI_STATUS_IGNORE(void) { return MPI_STATUS_IGNORE; }
static inline MPI_Errhandler CMPI_ERRORS_RETURN(void) { return MPI_ERRORS_RETURN; }
static inline int CMPI_SUCCESS(void) { return MPI_SUCCESS; }
static inline int CMPI_MAX_ERROR_STRING(void) { return MPI_MAX_ERROR_STRING; }
static inline MPI_Request CMPI_REQUEST_NULL(void) { return MPI_REQUEST_NULL; }
// Non-blocking sum in place (MPI_IN_PLACE is a macro Swift cannot import): overlap of gradient buckets.
static inline int CMPI_Iallreduce_sum_float_in_place(float *buffer, int count, MPI_Comm comm, MPI_Request *request) {
  return MPI_Iallreduce(MPI_IN_PLACE, buffer, count, MPI_FLOAT, MPI_SUM, comm, request);
}
// The ranks of `comm` on this host (MPI_COMM_TYPE_SHARED and MPI_INFO_NULL are macros Swift cannot import).
static inline int CMPI_Comm_split_by_host(MPI_Comm comm, int key, MPI_Comm *host) {
  return MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, key, MPI_INFO_NULL, host);
}
static inline int CMPI_Test(MPI_Request *request, int *flag) { return MPI_Test(request, flag, MPI_STATUS_IGNORE); }
static inline int CMPI_Wait(MPI_Request *request) { return MPI_Wait(request, MPI_STATUS_IGNORE); }

// A window of `bytes` that every rank of `comm` maps, for collectives done with loads and stores. When the ranks
// of `comm` all share one host's memory, the node's rank 0 allocates the bytes, every rank gets their address in
// *base, and a passive epoch is opened for the window's life (MPI_Win_sync needs one); the window is never freed
// (MPI_Finalize releases it). *base is NULL when the ranks span hosts. The window duplicates the node
// communicator, which is therefore freed here.
static inline int CMPI_Shared_window(MPI_Comm comm, MPI_Aint bytes, void **base, MPI_Win *window) {
  *base = NULL;
  MPI_Comm node;
  int rc = MPI_Comm_split_type(comm, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  if (rc != MPI_SUCCESS) return rc;
  int size, nodeSize, nodeRank;
  MPI_Comm_size(comm, &size);
  MPI_Comm_size(node, &nodeSize);
  MPI_Comm_rank(node, &nodeRank);
  if (nodeSize == size) {
    void *mine;
    rc = MPI_Win_allocate_shared(nodeRank == 0 ? bytes : 0, 1, MPI_INFO_NULL, node, &mine, window);
    MPI_Aint size0;
    int unit;
    if (rc == MPI_SUCCESS) rc = MPI_Win_shared_query(*window, 0, &size0, &unit, base);
    if (rc == MPI_SUCCESS) rc = MPI_Win_lock_all(MPI_MODE_NOCHECK, *window);
    if (rc != MPI_SUCCESS) *base = NULL;
  }
  MPI_Comm_free(&node);
  return rc;
}
// A barrier that also orders the shared window's stores and loads (MPI-3's unified model: sync, barrier, sync).
static inline int CMPI_Shared_synchronize(MPI_Win window, MPI_Comm comm) {
  int rc = MPI_Win_sync(window);
  if (rc == MPI_SUCCESS) rc = MPI_Barrier(comm);
  if (rc == MPI_SUCCESS) rc = MPI_Win_sync(window);
  return rc;
}

#endif
