package stack

// kernelDropper is a device that can tell how many frames the kernel
// dropped before lvsd read them (device.AFPacket: its established and its
// SYN socket).
type kernelDropper interface {
	KernelDrops() (established, syn uint64)
}

// kernelDrops sums the kernel's drops over the link's devices now (a
// device opened again starts from zero).
func (l *Link) kernelDrops() (established, syn uint64) {
	for _, d := range *l.devs.Load() {
		if k, ok := d.(kernelDropper); ok {
			e, s := k.KernelDrops()
			established += e
			syn += s
		}
	}
	return established, syn
}
