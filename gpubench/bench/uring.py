"""Every use of the PyPI `liburing` binding lives in this module.

The binding is native code that can kill the process (SIGILL on CPUs without the instructions a
wheel was built for), so gpubench imports it only after `python -m gpubench.bench.uring selftest`
succeeded in a child process (see gpubench.probe.iouring). Named constants are not relied on:
builds made with recent Cython lack them, so the kernel's uapi numbers are used.
"""

from __future__ import annotations

import json
import sys

# include/uapi/linux/io_uring.h, enum io_uring_op, in order
OPCODES = (
    "NOP READV WRITEV FSYNC READ_FIXED WRITE_FIXED POLL_ADD POLL_REMOVE SYNC_FILE_RANGE SENDMSG "
    "RECVMSG TIMEOUT TIMEOUT_REMOVE ACCEPT ASYNC_CANCEL LINK_TIMEOUT CONNECT FALLOCATE OPENAT CLOSE "
    "FILES_UPDATE STATX READ WRITE FADVISE MADVISE SEND RECV OPENAT2 EPOLL_CTL SPLICE "
    "PROVIDE_BUFFERS REMOVE_BUFFERS TEE SHUTDOWN RENAMEAT UNLINKAT MKDIRAT SYMLINKAT LINKAT MSG_RING "
    "FSETXATTR SETXATTR FGETXATTR GETXATTR SOCKET URING_CMD SEND_ZC SENDMSG_ZC READ_MULTISHOT WAITID "
    "FUTEX_WAIT FUTEX_WAKE FUTEX_WAITV FIXED_FD_INSTALL FTRUNCATE BIND LISTEN RECV_ZC EPOLL_WAIT "
    "READV_FIXED WRITEV_FIXED PIPE"
).split()

# IORING_FEAT_* bit order
FEATURES = (
    "SINGLE_MMAP NODROP SUBMIT_STABLE RW_CUR_POS CUR_PERSONALITY FAST_POLL POLL_32BITS "
    "SQPOLL_NONFIXED EXT_ARG NATIVE_WORKERS RSRC_TAGS CQE_SKIP LINKED_FILE REG_REG_RING "
    "RECVSEND_BUNDLE MIN_TIMEOUT RW_ATTR NO_IOWAIT"
).split()


def opcode_name(op: int) -> str:
    return OPCODES[op] if op < len(OPCODES) else f"OP_{op}"


def feature_names(mask: int) -> list[str]:
    return [FEATURES[i] if i < len(FEATURES) else f"BIT_{i}" for i in range(mask.bit_length()) if mask >> i & 1]


def selftest() -> dict:
    """Load the binding, open a small ring, and report what the kernel supports."""
    import liburing

    try:
        from importlib.metadata import version

        binding_version = version("liburing")
    except Exception:
        binding_version = "unknown"
    ring = liburing.io_uring()
    rc = liburing.io_uring_queue_init(8, ring, 0)
    if rc < 0:
        return {"loaded": True, "ring": False, "errno": -rc, "version": binding_version}
    try:
        probe = liburing.io_uring_get_probe_ring(ring)
        try:
            last_op = int(probe.last_op)
            supported = [opcode_name(op) for op in range(last_op + 1) if liburing.io_uring_opcode_supported(probe, op)]
        finally:
            liburing.io_uring_free_probe(probe)
        features = int(ring.features)
    finally:
        liburing.io_uring_queue_exit(ring)
    return {
        "loaded": True,
        "ring": True,
        "version": binding_version,
        "last_op": last_op,
        "opcodes": supported,
        "features": features,
        "feature_names": feature_names(features),
    }


if __name__ == "__main__":
    if sys.argv[1:] != ["selftest"]:
        sys.exit("usage: python -m gpubench.bench.uring selftest")
    try:
        print(json.dumps(selftest()))
    except OSError as e:  # e.g. io_uring disabled: the ring cannot be created
        print(json.dumps({"loaded": True, "ring": False, "errno": e.errno, "error": str(e)}))
