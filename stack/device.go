package stack

import "os"

// TunDevice is one queue of a Linux TAP or TUN device, opened on
// /dev/net/tun with IFF_NO_PI. With VNetHdr it was opened with IFF_VNET_HDR
// and checksum/TSO offload, so every read and write carries a virtio-net
// header first.
//
// The file descriptor is non-blocking and registered with the Go runtime's
// poller, so that Close wakes a goroutine blocked in Read. TunDevice owns
// the descriptor and closes it in Close.
type TunDevice struct {
	f     *os.File
	name  string
	vnet  bool
	l2    bool
	multi bool
}

// DeviceOptions says how to open a TAP or TUN device.
type DeviceOptions struct {
	// Name of the device (at most 15 bytes).
	Name string
	// TAP selects a TAP (Ethernet frames); false selects a TUN (IP packets).
	TAP bool
	// VNetHdr enables the virtio-net header with checksum and TSO offload.
	VNetHdr bool
	// Queues is the number of queues to open; more than one uses
	// IFF_MULTI_QUEUE. Zero means one.
	Queues int
	// MAC, when not zero, is the only unicast address the kernel passes to a
	// TAP (TUNSETTXFILTER); multicast and broadcast always pass.
	MAC [6]byte
}
