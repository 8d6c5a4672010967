/* Opening a device by the name a user gives (--gpu) and finding the NUMA
 * node it hangs off. The CUDA implementation of the device interface is
 * built only when the toolkit is found; a binary without it, or a machine
 * without a GPU or driver, gets a clear "no CUDA device" error here. */
#ifndef NM_GPU_H
#define NM_GPU_H

#include "numa/topo.h"
#include "runtime/device.h"

#include <stdbool.h>

/* spec: "N" (CUDA device N), "cpu" (the CPU implementation, see device.h),
 * or "cpu:NODE" (the CPU implementation claiming to hang off NODE, as a GPU
 * on that node would: the staging then goes there). topo (may be NULL)
 * gives a CUDA device its node. */
nm_device *nm_device_open(const char *spec, const nm_topo *topo, nm_error *err);

/* Checks spec's form without opening anything (option parsing). */
int nm_device_spec_check(const char *spec, nm_error *err);

/* The OS index of the node nearest the PCI device with this bus id
 * ("0000:84:00.0", any case, 4- or 8-digit domain) in topo, -1 when topo
 * does not list it or does not know its node. */
int nm_pci_node(const nm_topo *topo, const char *busid);

/* Whether this binary has the CUDA implementation. */
bool nm_cuda_built(void);

#endif
