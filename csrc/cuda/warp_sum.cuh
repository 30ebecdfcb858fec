// Sums over segments of a warp's lanes, shared by the kernels of csrc/cuda: a kernel whose rows
// are shorter than a warp gives each row a segment of `width` lanes instead of idling the rest.
#pragma once
#include <cstdint>

// The segment width for rows of `n` values: the smallest power of two >= min(n, 32), at least 1.
inline int segment_width(int64_t n) {
  int width = 1;
  while (width < 32 && width < n) width *= 2;
  return width;
}

// The sum of v over the `width` lanes of this lane's segment (width a power of two <= 32,
// segments aligned to it) lands in the segment's first lane; the others hold partial sums.
// Every lane of the warp calls it with the same width: the shuffles take the full mask.
template <typename T>
__device__ __forceinline__ T segment_sum(T v, int width) {
  for (int offset = width / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}
