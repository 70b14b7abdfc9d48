package stack

import "gvisor.dev/gvisor/pkg/tcpip"

// Error is a netstack error converted to a Go error. This is the only place
// where tcpip.Error crosses into lvsd's code; callers match it with
// errors.As and read Err when they need the netstack's own type.
type Error struct {
	Err tcpip.Error
}

func (e *Error) Error() string { return e.Err.String() }

// convErr converts a netstack error; nil stays nil.
func convErr(err tcpip.Error) error {
	if err == nil {
		return nil
	}
	return &Error{Err: err}
}
