package device

// TunOptions says how to open a TAP or TUN device.
type TunOptions struct {
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
