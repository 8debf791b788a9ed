"""Booting other kernels under QEMU to see what they can do on a described machine.

- kernels: a kernel image with its modules and config, from files or from a Debian package
  (resolved by name with apt-cache, fetched with apt-get download, unpacked into a cache
  directory: never installed into the host's /boot or /lib/modules);
- topology: the NUMA nodes, HMAT figures and CXL device the guest gets, as QEMU options;
- guest: one boot through virtme-ng (the host's root filesystem shared read-only), running a list
  of commands and collecting what each wrote, with a short trial boot deciding KVM or emulation;
- compare: `gpubench probe --kernel`, the probe inside beside the running kernel's.

Nothing here is imported by `gpubench probe` without --kernel.
"""
