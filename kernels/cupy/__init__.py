"""CuPy backend: the array-level reference code of `tickpath.kernels.reference` run on CuPy arrays.

Every function takes ``xp`` (default: cupy) so that the same code path runs on numpy in
CI, where no GPU exists. Importing these modules does not import cupy.
"""
