//go:build !linux

package lab

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"syscall"
)

var errNotLinux = errors.New("network namespaces need Linux")

// Do needs Linux; elsewhere it returns an error.
func Do(ns NS, fn func() error) error { return errNotLinux }

// DialContext needs Linux; elsewhere its function returns an error.
func DialContext(ns NS) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(context.Context, string, string) (net.Conn, error) { return nil, errNotLinux }
}

// DialContextFrom needs Linux; elsewhere its function returns an error.
func DialContextFrom(ns NS, src netip.Addr) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return DialContext(ns)
}

func mknodTun(path string) error { return errNotLinux }

func backgroundAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

// SendUDP needs Linux; elsewhere it returns an error.
func SendUDP(ns NS, addr string, opt, value int, payload []byte) error { return errNotLinux }
