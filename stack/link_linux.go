package stack

import (
	"errors"
	"syscall"
)

// isFatal reports whether a read error means the device is gone for good.
func isFatal(err error) bool {
	return errors.Is(err, syscall.EBADFD) || errors.Is(err, syscall.ENODEV) ||
		errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENXIO)
}
