// Package device opens lvsd's packet devices and moves frames through them:
// TAP and TUN queues on /dev/net/tun (Tun, with the virtio-net header and
// checksum/TSO offload), AF_PACKET socket pairs on an existing Ethernet
// interface (AFPacket, in batches), and an in-memory device for tests (Mem).
// Open turns one Spec into the queues of a device and the link's MAC,
// probing, creating and bringing up the interface as its kind requires.
//
// It imports no netstack: the director's link (package stack) and the
// IPIP decapsulator of a real server (package realserver) both use it.
//
// Buffers: Read and ReadBatch fill the caller's buffers, Write and
// WriteBatch send from them; a device keeps no reference to a buffer after
// the call returns. A device owns its descriptors and closes them in Close.
//
// Goroutines: a device starts none. One goroutine reads a queue; Write may
// be called from any goroutine; Close wakes a reader blocked in Read or
// ReadBatch (see fdGuard), which then returns an error IsClosed recognises.
package device
