"""The math of tickpath, backend by backend: numpy references, numba CPU, CUDA, CuPy."""
