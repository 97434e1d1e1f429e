"""numba-CUDA kernels, compiled from the same scalar source as the CPU kernels.

Importing a module here needs numba-cuda and either a GPU or ``NUMBA_ENABLE_CUDASIM=1``
(the simulator); `tickpath.kernels.batch` imports them only when backend="cuda" is requested.
The host wrappers accept host (numpy) arrays, which they copy to the device, or device
arrays (anything with ``__cuda_array_interface__``), which they use in place.
"""
