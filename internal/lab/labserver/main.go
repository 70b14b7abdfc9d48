// Command labserver is the real server and the client of lvsd's namespace
// labs (package internal/lab). Tests and the demo build it with
//
//	go build -o DIR/labserver ./internal/lab/labserver
//
// and run it inside namespaces:
//
//	labserver http -listen :8080 -name rs1      HTTP real server
//	labserver udp  -listen :5353 -name rs1      UDP echo real server
//	labserver get  -url URL -n 300 [-json]      HTTP client, sequential requests
//	labserver udp-send -addr A -msg M           UDP client: send, print the echo
//	labserver dns  -listen :5353 -name rs1      DNS server (miekg/dns), UDP
//	labserver synflood -dev D -dst-mac M -dst VIP  SYN flood from random lab sources
//
// The servers answer with their name and the client address they saw, and
// log one line per request to stdout: that is how a test checks which real
// server a director chose and that NAT kept the client's address. They stop
// on SIGINT or SIGTERM.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: labserver <command> [flags]

commands:
  http      -listen :8080 -name rs1   HTTP server: GET / answers "<name> <client-ip:port>",
                                      GET /bytes?n=N sends N bytes, POST /upload counts bytes,
                                      POST /sha256 answers "<name> <client> <bytes> <sha256>";
                                      -cert F -key F: HTTPS; -ports N: N ports from -listen's
  udp       -listen :5353 -name rs1   UDP echo: answers "<name> <message>"
  get       -url URL -n N [-json]     N sequential HTTP requests, one connection each;
                                      one line per request; exit 1 if any failed
  udp-send  -addr HOST:PORT -msg M    send M, wait for the echo, print it
  dns       -listen :5353 -name rs1   DNS server over UDP: answers A queries for NAME.lab.
                                      and lvsd.test. with 198.18.0.53, NXDOMAIN otherwise
  synflood  -dev D -dst-mac M -dst VIP [-port P -rate R -duration D -count N]
                                      raw SYNs (AF_PACKET) from random sources in
                                      198.18.4.0-198.19.255.255; prints a JSON report
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "http":
		err = runHTTP(ctx, args)
	case "udp":
		err = runUDP(ctx, args)
	case "get":
		err = runGet(ctx, args)
	case "dns":
		err = runDNS(ctx, args)
	case "udp-send":
		err = runUDPSend(ctx, args)
	case "synflood":
		err = runSYNFlood(ctx, args)
	case "help", "-h", "--help":
		fmt.Print(usage)
		return
	default:
		fmt.Fprintf(os.Stderr, "labserver: unknown command %q\n%s", cmd, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "labserver %s: %v\n", cmd, err)
		os.Exit(1)
	}
}
