/* The CUDA implementation of the device interface (device_cuda.cu), linked
 * only when NUMALM_HAVE_CUDA. The CUDA runtime is linked statically: a
 * machine without a driver gets cudaErrorInsufficientDriver or
 * cudaErrorNoDevice, reported as "no CUDA device (...)". */
#ifndef NM_DEVICE_CUDA_H
#define NM_DEVICE_CUDA_H

#include "runtime/device.h"

#ifdef __cplusplus
extern "C" {
#endif

nm_device *nm_device_cuda_open(int ordinal, nm_error *err);

#ifdef __cplusplus
}
#endif

#endif
