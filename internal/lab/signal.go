package lab

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// SignalContext returns a context that the first SIGINT, SIGTERM or SIGHUP
// cancels, which makes the step under way fail and the teardown run. Later
// signals are absorbed until stop is called (a half-done teardown is what
// would leave namespaces behind); prefix starts the lines it prints.
func SignalContext(prefix string) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				if ctx.Err() == nil {
					fmt.Fprintf(os.Stderr, "\n%s%v: stopping; tearing the lab down...\n", prefix, s)
					cancel()
				} else {
					fmt.Fprintf(os.Stderr, "%s%v: still tearing down, please wait\n", prefix, s)
				}
			}
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
