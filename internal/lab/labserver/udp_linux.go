package main

import (
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// udpEcho reads datagrams from c and answers each from the address it was
// sent to, which the kernel reports with IP_PKTINFO / IPV6_PKTINFO: a DR or
// TUN real server holds the VIP on lo, and a reply from a wildcard socket
// would otherwise leave from the address of the route to the client.
type udpEcho struct {
	c   *net.UDPConn
	oob []byte
}

func newUDPEcho(c *net.UDPConn) *udpEcho {
	if rc, err := c.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			// Either may fail on a socket of the other family.
			unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
			unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
		})
	}
	return &udpEcho{c: c, oob: make([]byte, 256)}
}

// read returns a datagram, its source and the address it was sent to
// (invalid when the kernel did not say), IPv4 addresses unmapped.
func (u *udpEcho) read(buf []byte) (int, netip.AddrPort, netip.Addr, error) {
	n, oobn, _, from, err := u.c.ReadMsgUDPAddrPort(buf, u.oob)
	if err != nil {
		return 0, from, netip.Addr{}, err
	}
	var dst netip.Addr
	if msgs, err := unix.ParseSocketControlMessage(u.oob[:oobn]); err == nil {
		for _, m := range msgs {
			switch {
			case m.Header.Level == unix.IPPROTO_IP && m.Header.Type == unix.IP_PKTINFO && len(m.Data) >= unix.SizeofInet4Pktinfo:
				dst = netip.AddrFrom4([4]byte(m.Data[8:12])) // ipi_addr
			case m.Header.Level == unix.IPPROTO_IPV6 && m.Header.Type == unix.IPV6_PKTINFO && len(m.Data) >= unix.SizeofInet6Pktinfo:
				dst = netip.AddrFrom16([16]byte(m.Data[0:16]))
			}
		}
	}
	return n, netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), dst.Unmap(), nil
}

// write sends b to to, from src when it is valid.
func (u *udpEcho) write(b []byte, to netip.AddrPort, src netip.Addr) error {
	var oob []byte
	switch {
	case !src.IsValid():
	case src.Is4() && to.Addr().Is4():
		oob = unix.PktInfo4(&unix.Inet4Pktinfo{Spec_dst: src.As4()})
	default:
		oob = unix.PktInfo6(&unix.Inet6Pktinfo{Addr: src.As16()})
	}
	_, _, err := u.c.WriteMsgUDPAddrPort(b, oob, to)
	return err
}
