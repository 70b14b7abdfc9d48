package device

import (
	"errors"
	"syscall"
)

// IsFatal reports whether a read error means the device is gone for good.
func IsFatal(err error) bool {
	return errors.Is(err, syscall.EBADFD) || errors.Is(err, syscall.ENODEV) ||
		errors.Is(err, syscall.EIO) || errors.Is(err, syscall.ENXIO)
}
