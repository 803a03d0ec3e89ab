// zlib's gz* file API; inflateInit2 is a macro Swift cannot call, and gzopen/gzread are all we need.
#ifndef CZLIB_SHIM_H
#define CZLIB_SHIM_H
#include <zlib.h>
#endif
