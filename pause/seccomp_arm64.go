package pause

import "golang.org/x/sys/unix"

// auditArch is how the kernel names a 64-bit Arm system call in the
// filter's input.
const auditArch = unix.AUDIT_ARCH_AARCH64
