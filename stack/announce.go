package stack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

var errNoDevice = errors.New("link has no device")

// Sizes of the announcements: a gratuitous ARP (Ethernet + ARP, padded to
// Ethernet's 60-byte minimum) and an unsolicited neighbour advertisement
// (Ethernet + IPv6 + NA + target link-layer address option).
const (
	garpLen = 60
	unaLen  = header.EthernetMinimumSize + header.IPv6MinimumSize + header.ICMPv6NeighborAdvertMinimumSize + 8
)

// announce tells the neighbours on NIC id's link that a is at the link's
// MAC, as the kernel does when an address comes up or the device changes
// its address (arp_notify, ndisc_notify):
//
//   - IPv4: a gratuitous ARP, an ARP request from a for a itself, broadcast,
//     with a zero target hardware address;
//   - IPv6: an unsolicited neighbour advertisement for a, from a to the
//     all-nodes group (ff02::1), hop limit 255, with the override flag and
//     the target link-layer address option.
//
// A neighbour that has an entry for a (a client or router for a VIP, a
// real server for its gateway DIP) replaces the MAC it holds, so that a
// director restarted with another MAC, or moved from a TAP to a packet
// interface, is reachable at once instead of after the neighbour's entry
// expires (RFC 5227 section 3, RFC 4861 section 7.2.6). Links without MACs
// (TUN) have no neighbours to tell: announce does nothing there.
//
// Once, as the kernel: a neighbour whose entry changed less than its
// locktime (1 s) ago may ignore it, and the entry is then corrected by the
// neighbour's own resolution.
func (st *Stack) announce(id NICID, a netip.Addr) error {
	st.mu.Lock()
	nic := st.nics[id]
	st.mu.Unlock()
	if nic == nil || !nic.ethernet {
		return nil
	}
	mac := nic.link.LinkAddress()
	var frame []byte
	if a.Is4() {
		frame = garp(mac, a)
	} else {
		frame = unsolicitedNA(mac, a)
	}
	if err := nic.link.writeFrame(frame); err != nil {
		return fmt.Errorf("announce %s: %w", a, err)
	}
	return nil
}

// garp returns a gratuitous ARP for a (IPv4) from mac.
func garp(mac tcpip.LinkAddress, a netip.Addr) []byte {
	b := make([]byte, garpLen)
	eth := header.Ethernet(b)
	eth.Encode(&header.EthernetFields{SrcAddr: mac, DstAddr: header.EthernetBroadcastAddress, Type: header.ARPProtocolNumber})
	arp := header.ARP(b[header.EthernetMinimumSize:])
	arp.SetIPv4OverEthernet()
	arp.SetOp(header.ARPRequest)
	ip := a.As4()
	copy(arp.HardwareAddressSender(), mac)
	copy(arp.ProtocolAddressSender(), ip[:])
	copy(arp.ProtocolAddressTarget(), ip[:]) // the target hardware address stays zero
	return b
}

// unsolicitedNA returns an unsolicited neighbour advertisement for a (IPv6)
// from mac.
func unsolicitedNA(mac tcpip.LinkAddress, a netip.Addr) []byte {
	b := make([]byte, unaLen)
	allNodes := header.IPv6AllNodesMulticastAddress
	eth := header.Ethernet(b)
	eth.Encode(&header.EthernetFields{SrcAddr: mac, DstAddr: header.EthernetAddressFromMulticastIPv6Address(allNodes), Type: header.IPv6ProtocolNumber})
	ipb := b[header.EthernetMinimumSize:]
	payload := len(ipb) - header.IPv6MinimumSize
	src := tcpip.AddrFrom16(a.As16())
	header.IPv6(ipb).Encode(&header.IPv6Fields{
		PayloadLength:     uint16(payload),
		TransportProtocol: header.ICMPv6ProtocolNumber,
		HopLimit:          header.NDPHopLimit,
		SrcAddr:           src,
		DstAddr:           allNodes,
	})
	icmp := header.ICMPv6(ipb[header.IPv6MinimumSize:])
	icmp.SetType(header.ICMPv6NeighborAdvert)
	na := header.NDPNeighborAdvert(icmp.MessageBody())
	na.SetOverrideFlag(true)
	na.SetTargetAddress(src)
	opt := icmp.MessageBody()[header.NDPNAMinimumSize:]
	opt[0], opt[1] = 2, 1 // target link-layer address, 8 bytes
	copy(opt[2:8], mac)
	icmp.SetChecksum(0)
	binary.BigEndian.PutUint16(icmp[2:4], ^checksum.Checksum(icmp, header.PseudoHeaderChecksum(header.ICMPv6ProtocolNumber, src, allNodes, uint16(len(icmp)))))
	return b
}

// writeFrame writes one complete frame of the director's own (no checksum
// or segmentation offload) to the first queue of the link's current
// devices (those Replace put in place after a re-attach or a handoff, not
// the ones the link was made with, which are closed by then), as
// WritePackets does for the netstack's packets.
func (l *Link) writeFrame(frame []byte) error {
	devs := *l.devs.Load()
	if len(devs) == 0 {
		return errNoDevice
	}
	b := make([]byte, l.vh+len(frame)) // an empty virtio-net header first
	copy(b[l.vh:], frame)
	if _, err := devs[0].Write(b); err != nil {
		l.stats.TxErrors.Add(1)
		return err
	}
	l.stats.StackOut.Add(1)
	return nil
}

// announceAll announces every address of addrs on NIC id; a failure is
// logged, not returned: the address works, only the neighbours' stale
// entries wait for their own expiry.
func (st *Stack) announceAll(id NICID, addrs ...netip.Addr) {
	for _, a := range addrs {
		if err := st.announce(id, a); err != nil {
			st.log.Warn("address announcement failed", "addr", a, "err", err)
		}
	}
}
