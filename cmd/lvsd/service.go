package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/lvsd/lvsd/config"
	"github.com/lvsd/lvsd/director"
	"github.com/lvsd/lvsd/metrics"
)

// startService starts what lvsd run serves beside the director: the
// metrics listener when [metrics] listen is set. It then tells systemd
// (Type=notify) that lvsd is ready: the devices are attached and the
// services published by director.New, and the listener is bound. The
// goroutines it starts stop with ctx and are counted in wg.
func startService(ctx context.Context, wg *sync.WaitGroup, cfg *config.Config, d *director.Director, version string, log *slog.Logger) error {
	if cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		srv := metrics.New(metrics.Options{
			Source: d, Table: d.Table(), Reloads: d, Version: version, Logger: log,
		})
		wg.Go(func() {
			if err := srv.Serve(ctx, ln); err != nil {
				log.Error("metrics listener stopped", "err", err)
			}
		})
		log.Info("metrics listener", "address", ln.Addr().String())
	}
	// Outside systemd NOTIFY_SOCKET is unset and this does nothing.
	if _, err := daemon.SdNotify(false, daemon.SdNotifyReady); err != nil {
		log.Warn("systemd readiness notification failed", "err", err)
	}
	return nil
}

// notifyReloading and notifyReloaded bracket a reload for systemd.
func notifyReloading() { daemon.SdNotify(false, daemon.SdNotifyReloading) }
func notifyReloaded()  { daemon.SdNotify(false, daemon.SdNotifyReady) }
