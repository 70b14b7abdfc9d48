package takeover

import (
	"errors"
	"os"
)

const (
	// MaxManifest bounds the manifest's length.
	MaxManifest = 64 << 10
	// MaxFDs bounds the descriptors of one handoff (all devices, all
	// queues).
	MaxFDs = 64
	// MaxTable bounds the length of the state handed over (package
	// director's handoff state: the connection table's snapshot, 83 bytes
	// a connection and about 30 more for one of the SYN proxy, and up to
	// 256 MiB of neighbours and persistence templates): 2 GiB, which a
	// length of 31 bits holds, and which only a table near
	// conntrack.MaxSnapshot connections together with a million templates
	// exceeds (Give then refuses, and the giver goes on).
	MaxTable = 1<<31 - 1

	ackDevices = 'D'
	ackRunning = 'R'
	version    = 1
)

// ErrProtocol is wrapped by every error about what the other side sent:
// the handoff is abandoned (the giver goes on running).
var ErrProtocol = errors.New("takeover protocol error")

// Device is one device of a handoff: its configured interface name, its
// kind ("tap", "tun", "packet"), the MAC the giver's netstack has on it
// (zero on a TUN), and its descriptors: one per queue of a TAP or TUN,
// three per queue of a packet interface (device.AFPacket.Dup's order).
type Device struct {
	Interface string
	Kind      string
	MAC       [6]byte
	Files     []*os.File
}

// Path returns the handoff socket of the lvsd whose control socket is
// control: beside it, so that it has the same owner and directory.
func Path(control string) string { return control + ".takeover" }
