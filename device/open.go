package device

import (
	"fmt"
	"log/slog"
	"net"
	"os"
)

// Kind is the kind of a packet device.
type Kind uint8

const (
	// TAP is a TAP device: Ethernet frames, lvsd's own MAC.
	TAP Kind = iota
	// TUN is a TUN device: bare IPv4 and IPv6 packets.
	TUN
	// Packet is an existing Ethernet interface attached with AF_PACKET
	// sockets: Ethernet frames, the interface's MAC.
	Packet
)

// Spec says which device Open opens and how.
type Spec struct {
	// Name of the device or interface (1 to 15 bytes).
	Name string
	Kind Kind
	// MTU is the IP MTU. Open sets it on a TAP or TUN; a Packet interface
	// must have at least this MTU already.
	MTU int
	// Queues is the number of queues (TAP, TUN) or of sockets in one fanout
	// group (Packet); one reader each. Zero means one.
	Queues int
	// VNetHdr enables the virtio-net header with checksum and GSO offload.
	VNetHdr bool
	// MAC is the netstack's own MAC on a TAP: the only unicast address the
	// kernel passes to it (TUNSETTXFILTER). Ignored on a TUN; on a Packet
	// interface Open returns the interface's own MAC instead.
	MAC [6]byte
	// Create lets Open create a missing TAP or TUN (needs CAP_NET_ADMIN).
	// Without it a missing device is an error that says so.
	Create bool
	// Persist makes a TAP or TUN that Open creates persistent: it stays
	// after lvsd closes it (and exits), as one made with `ip tuntap add`.
	Persist bool
	// Bridge, on a TAP, is the bridge the device must be a port of: Open
	// adds it (needs CAP_NET_ADMIN) unless it is one already, so that a
	// device lvsd creates again (after a restart, or after it was deleted)
	// is where it was.
	Bridge string
	// Logger receives what Open notices but tolerates. Nil discards it.
	Logger *slog.Logger
}

// Open opens the queues of the device that spec names and returns them with
// the MAC of the link: spec.MAC on a TAP, the interface's own on a Packet
// interface, zero on a TUN. The caller owns the queues and closes them.
//
// A TAP or TUN is created when missing if spec.Create (which needs
// CAP_NET_ADMIN; persistent with spec.Persist), put in spec.Bridge, given
// its MTU and brought up, because the netstack's first ARP request fails at
// once on a device that is down; when lvsd lacks the privilege for that, a
// device that is up already is used as it is. A Packet interface is never
// changed: it must exist, be up, be Ethernet and have at least spec.MTU,
// and the kernel must leave it to lvsd: no address on it (but an IPv6
// link-local one), no forwarding (see checkPacketHost).
func Open(spec Spec) ([]Device, [6]byte, error) {
	log := spec.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if spec.Kind == Packet {
		return openPacket(spec)
	}
	mac := spec.MAC
	if spec.Kind == TUN {
		mac = [6]byte{}
	}
	index := linkIndex(spec.Name)
	existed := index != ""
	missing := fmt.Errorf("interface %q does not exist and create = false: create it first (`ip tuntap add %s mode %s`) or set create = true", spec.Name, spec.Name, map[Kind]string{TAP: "tap", TUN: "tun"}[spec.Kind])
	if !existed && !spec.Create {
		return nil, mac, missing
	}
	tuns, err := OpenTun(TunOptions{
		Name: spec.Name, TAP: spec.Kind == TAP, VNetHdr: spec.VNetHdr, Queues: spec.Queues, MAC: mac,
	})
	if err != nil {
		return nil, mac, fmt.Errorf("interface %q: %w", spec.Name, err)
	}
	if !spec.Create && linkIndex(spec.Name) != index {
		// TUNSETIFF creates a device it does not find: the one seen before
		// was going away (deleted under lvsd), and this is a new one,
		// which create = false forbids. Closing it removes it.
		for _, t := range tuns {
			t.Close()
		}
		return nil, mac, missing
	}
	fail := func(err error) ([]Device, [6]byte, error) {
		for _, t := range tuns {
			t.Close()
		}
		return nil, mac, fmt.Errorf("interface %q: %w", spec.Name, err)
	}
	if !existed && spec.Persist {
		if err := tuns[0].setPersist(); err != nil {
			return fail(err)
		}
	}
	if spec.Bridge != "" && spec.Kind == TAP {
		if err := joinBridge(spec.Name, spec.Bridge); err != nil {
			return fail(err)
		}
	}
	if err := SetLinkUp(spec.Name, spec.MTU); err != nil {
		up, uerr := LinkIsUp(spec.Name)
		if uerr != nil || !up {
			for _, t := range tuns {
				t.Close()
			}
			return nil, mac, fmt.Errorf("interface %q is down and lvsd cannot bring it up (run `ip link set %s up` as root): %w", spec.Name, spec.Name, err)
		}
		log.Debug("interface already up; not changing it", "interface", spec.Name, "err", err)
	}
	devs := make([]Device, len(tuns))
	for i, t := range tuns {
		devs[i] = t
	}
	return devs, mac, nil
}

// openPacket attaches to an existing interface after checking that it can
// carry the configured link.
func openPacket(spec Spec) ([]Device, [6]byte, error) {
	var mac [6]byte
	ifi, err := net.InterfaceByName(spec.Name)
	if err != nil {
		return nil, mac, fmt.Errorf("interface %q: %w (a packet interface must exist)", spec.Name, err)
	}
	if ifi.Flags&net.FlagUp == 0 {
		return nil, mac, fmt.Errorf("interface %q is down (run `ip link set %s up`)", spec.Name, spec.Name)
	}
	if ifi.MTU < spec.MTU {
		return nil, mac, fmt.Errorf("interface %q: its MTU is %d, below the configured mtu %d", spec.Name, ifi.MTU, spec.MTU)
	}
	if len(ifi.HardwareAddr) != len(mac) {
		return nil, mac, fmt.Errorf("interface %q is not an Ethernet interface", spec.Name)
	}
	copy(mac[:], ifi.HardwareAddr)
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, mac, fmt.Errorf("interface %q: addresses: %w", spec.Name, err)
	}
	if err := checkPacketHost(spec.Name, addrs, os.ReadFile); err != nil {
		return nil, mac, err
	}
	socks, err := OpenAFPacket(AFPacketOptions{Name: spec.Name, VNetHdr: spec.VNetHdr, Queues: spec.Queues})
	if err != nil {
		return nil, mac, fmt.Errorf("interface %q: %w", spec.Name, err)
	}
	devs := make([]Device, len(socks))
	for i, s := range socks {
		devs[i] = s
	}
	return devs, mac, nil
}
