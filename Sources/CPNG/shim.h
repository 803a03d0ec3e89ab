// libpng's simplified API (png_image): reads any PNG (palette, gray, 16-bit, alpha, interlaced) into 8-bit gray or
// RGB, for the image-folder datasets.
#ifndef CPNG_SHIM_H
#define CPNG_SHIM_H
#include <png.h>
#endif
