//go:build !linux

package main

import (
	"net"
	"net/netip"
)

// udpEcho answers from the socket's own address (see udp_linux.go).
type udpEcho struct{ c *net.UDPConn }

func newUDPEcho(c *net.UDPConn) *udpEcho { return &udpEcho{c: c} }

func (u *udpEcho) read(buf []byte) (int, netip.AddrPort, netip.Addr, error) {
	n, from, err := u.c.ReadFromUDPAddrPort(buf)
	return n, from, netip.Addr{}, err
}

func (u *udpEcho) write(b []byte, to netip.AddrPort, _ netip.Addr) error {
	_, err := u.c.WriteToUDPAddrPort(b, to)
	return err
}
