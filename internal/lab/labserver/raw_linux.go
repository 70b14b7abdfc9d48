package main

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// rawSender sends whole Ethernet frames on one interface (AF_PACKET,
// protocol 0 so that it receives nothing, past the qdisc).
type rawSender struct{ fd int }

func openRawSender(ifindex int) (*rawSender, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket(AF_PACKET): %w", err)
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_QDISC_BYPASS, 1)
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind: %w", err)
	}
	return &rawSender{fd: fd}, nil
}

func (s *rawSender) send(f []byte) error {
	_, err := unix.Write(s.fd, f)
	return err
}

func (s *rawSender) close() { unix.Close(s.fd) }
