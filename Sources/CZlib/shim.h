// zlib: the gz* file API for IDX .gz files, compress2 for PNG pictures, and raw inflate for the deflated members of
// a .npz (a ZIP archive). inflateInit2 is a macro Swift cannot call; ddp_inflate_init_raw is it, for raw deflate.
#ifndef CZLIB_SHIM_H
#define CZLIB_SHIM_H
#include <zlib.h>

static inline int ddp_inflate_init_raw(z_stream *stream) { return inflateInit2(stream, -MAX_WBITS); }
#endif
