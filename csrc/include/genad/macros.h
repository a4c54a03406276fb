// Host/device qualifiers for the header-only math shared by the CPU (.cpp) and CUDA (.cu) kernels.
#pragma once

#ifdef __CUDACC__
#define GENAD_HD __host__ __device__ __forceinline__
#else
#define GENAD_HD inline
#endif
