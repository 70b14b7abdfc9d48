//go:build !linux

package main

import "errors"

type rawSender struct{}

func openRawSender(int) (*rawSender, error) { return nil, errors.New("synflood needs Linux") }
func (*rawSender) send([]byte) error        { return nil }
func (*rawSender) close()                   {}
