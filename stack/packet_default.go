//go:build !linux

package stack

// PacketDevice is Linux-only (AF_PACKET); elsewhere it never opens.
type PacketDevice struct{}

// PacketOptions say how to attach to an interface.
type PacketOptions struct {
	Name    string
	VNetHdr bool
	Queues  int
}

// OpenPacket is Linux-only.
func OpenPacket(opts PacketOptions) ([]*PacketDevice, error) { return nil, errNotLinux }

// Read, Write and Close exist so that PacketDevice is a Device everywhere.
func (d *PacketDevice) Read(b []byte) (int, error)  { return 0, errNotLinux }
func (d *PacketDevice) Write(b []byte) (int, error) { return 0, errNotLinux }
func (d *PacketDevice) Close() error                { return errNotLinux }
