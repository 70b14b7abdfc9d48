//go:build !linux

package device

import "os"

// AdoptTun needs Linux.
func AdoptTun(fd int) (*Tun, error) { return nil, errNotLinux }

// Dup needs Linux.
func (d *Tun) Dup() (*os.File, error) { return nil, errNotLinux }

// AdoptAFPacket needs Linux.
func AdoptAFPacket(rx, syn, tx int) (*AFPacket, error) { return nil, errNotLinux }

// VNetHdr needs Linux.
func (d *AFPacket) VNetHdr() bool { return false }

// Dup needs Linux.
func (d *AFPacket) Dup() ([]*os.File, error) { return nil, errNotLinux }

// StopReading does nothing off Linux.
func (d *Tun) StopReading() {}

// StopReading does nothing off Linux.
func (d *AFPacket) StopReading() {}
