package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/lvsd/lvsd/realserver"
)

const realserverUsage = `usage: lvsd realserver -tun NAME -vip ADDR[,ADDR...] [-director ADDR[,ADDR...]] [-gue-port N] [-mtu N] [-log-level L]

Runs on a TUN-mode (ipvsadm -i) real server whose kernel has no ipip, gre or
fou module: receives the tunnelled packets the director sends to this host
(raw IPv4 and IPv6 sockets of IP protocols 4 and 41: IPv4 or IPv6 inside an
IPv4 or IPv6 outer header; 47: GRE, --tun-type gre; with -gue-port, a UDP
socket on that port: GUE, --tun-type gue), strips the outer headers and
writes the inner packet,
when it is addressed to a VIP, into the TUN device NAME, so that this host's
kernel answers the client directly. Consecutive TCP segments of a flow are
joined into one super-frame first (GRO in user space; see docs/modes.md). The host must hold each VIP (ip addr add
VIP/32 dev lo) and accept clients' addresses on the TUN (rp_filter 0 or 2);
see docs/modes.md. SIGINT/SIGTERM stop it. Needs CAP_NET_RAW and, to create
or bring up the TUN, CAP_NET_ADMIN.

flags:
`

// runRealserver is `lvsd realserver`.
func runRealserver(args []string) int {
	fs := flag.NewFlagSet("lvsd realserver", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), realserverUsage)
		fs.PrintDefaults()
	}
	tun := fs.String("tun", "", "TUN device to write the inner packets to (created if missing, brought up)")
	vips := fs.String("vip", "", "virtual addresses this server answers for, comma-separated; only packets to them are accepted")
	directors := fs.String("director", "", "accept tunnelled packets only from these director addresses (DIPs, IPv4 or IPv6), comma-separated; default: any")
	mtu := fs.Int("mtu", 0, "MTU to set on the TUN device; 0 leaves it")
	guePort := fs.Int("gue-port", 0, "UDP port to receive GUE on (the director's tun_port of this real server); 0: no GUE")
	level := fs.String("log-level", "info", "log level: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "lvsd realserver: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(*level)); err != nil {
		fmt.Fprintf(os.Stderr, "lvsd realserver: -log-level: %v\n", err)
		return 2
	}
	o := realserver.Options{TUN: *tun, MTU: *mtu, GUEPort: *guePort}
	var err error
	if o.VIPs, err = addrList(*vips); err != nil {
		fmt.Fprintf(os.Stderr, "lvsd realserver: -vip: %v\n", err)
		return 2
	}
	if len(o.VIPs) == 0 {
		fmt.Fprintln(os.Stderr, "lvsd realserver: -vip: name the virtual addresses this server answers for, comma-separated")
		return 2
	}
	if o.Directors, err = addrList(*directors); err != nil {
		fmt.Fprintf(os.Stderr, "lvsd realserver: -director: %v\n", err)
		return 2
	}
	if o.TUN == "" {
		fmt.Fprintln(os.Stderr, "lvsd realserver: -tun: name the TUN device")
		return 2
	}
	if o.GUEPort < 0 || o.GUEPort > 65535 {
		fmt.Fprintf(os.Stderr, "lvsd realserver: -gue-port: %d is out of range 1..65535 (0: no GUE)\n", o.GUEPort)
		return 2
	}
	if o.MTU != 0 && (o.MTU < 68 || o.MTU > 65535) {
		fmt.Fprintf(os.Stderr, "lvsd realserver: -mtu: %d is out of range 68..65535\n", o.MTU)
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lv}))
	o.Logger = log
	s, err := realserver.New(o)
	if err != nil {
		log.Error("start failed", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := s.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// addrList parses a comma-separated list of IP addresses; "" is none.
func addrList(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}
