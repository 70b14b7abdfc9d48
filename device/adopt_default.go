//go:build !linux

package device

import "os"

// AdoptTun needs Linux.
func AdoptTun(fd int) (*Tun, error) { return nil, errNotLinux }

// Dup needs Linux.
func (d *Tun) Dup() (*os.File, error) { return nil, errNotLinux }
