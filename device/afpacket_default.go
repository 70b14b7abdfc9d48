//go:build !linux

package device

// AFPacket is Linux-only (AF_PACKET); elsewhere it never opens.
type AFPacket struct{}

// AFPacketOptions say how to attach to an interface.
type AFPacketOptions struct {
	Name    string
	VNetHdr bool
	Queues  int
}

// OpenAFPacket is Linux-only.
func OpenAFPacket(opts AFPacketOptions) ([]*AFPacket, error) { return nil, errNotLinux }

// Read, Write and Close exist so that AFPacket is a Device everywhere.
func (d *AFPacket) Read(b []byte) (int, error)  { return 0, errNotLinux }
func (d *AFPacket) Write(b []byte) (int, error) { return 0, errNotLinux }
func (d *AFPacket) Close() error                { return errNotLinux }

// BatchSize, ReadBatch and WriteBatch exist so that AFPacket is a
// BatchDevice everywhere.
func (d *AFPacket) BatchSize() int                                    { return 1 }
func (d *AFPacket) ReadBatch(bufs [][]byte, sizes []int) (int, error) { return 0, errNotLinux }
func (d *AFPacket) WriteBatch(frames [][]byte) (int, error)           { return 0, errNotLinux }

// KernelDrops is Linux-only.
func (d *AFPacket) KernelDrops() (established, syn uint64) { return 0, 0 }
