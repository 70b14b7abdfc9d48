//go:build !linux

package main

import (
	"context"
	"errors"
	"log/slog"
	"os"

	"github.com/lvsd/lvsd/director"
	"github.com/lvsd/lvsd/takeover"
)

// A graceful restart passes Linux devices between processes: Linux only.

type taker struct{}

func startTakeover(string, *slog.Logger) (*taker, error) {
	return nil, errors.New("-takeover needs Linux")
}
func (t *taker) devices() []takeover.Device                                          { return nil }
func (t *taker) closeFiles()                                                         {}
func (t *taker) close()                                                              {}
func (t *taker) finish(*director.Director) error                                     { return errors.New("-takeover needs Linux") }
func serveHandoff(context.Context, string, *director.Director, *slog.Logger, func()) {}
func notifyUSR2() chan os.Signal                                                     { return nil }
func reexecOnSignal(context.Context, chan os.Signal, *slog.Logger)                   {}
