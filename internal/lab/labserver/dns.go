package main

import (
	"context"
	"flag"
	"log"
	"net"
	"os"
	"strings"

	"github.com/miekg/dns"
)

// runDNS is a small authoritative DNS server over UDP (miekg/dns, a real
// DNS implementation, not a mock): A queries for NAME.lab. and lvsd.test.
// get 198.18.0.53; other names get NXDOMAIN. One log line per query.
func runDNS(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("labserver dns", flag.ContinueOnError)
	listen := fs.String("listen", ":5353", "address to listen on")
	name := fs.String("name", "rs", "server name: it answers for NAME.lab.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := log.New(os.Stdout, "", log.Ltime|log.Lmicroseconds)
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return err
	}
	zones := map[string]bool{dns.Fqdn(*name + ".lab"): true, "lvsd.test.": true}
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		m.Authoritative = true
		if len(r.Question) == 1 {
			q := r.Question[0]
			qn := strings.ToLower(q.Name)
			logger.Printf("%s dns from %s %s %s", *name, w.RemoteAddr(), dns.TypeToString[q.Qtype], qn)
			switch {
			case !zones[qn]:
				m.Rcode = dns.RcodeNameError
			case q.Qtype == dns.TypeA:
				m.Answer = append(m.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60},
					A:   net.IPv4(198, 18, 0, 53),
				})
			}
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: handler}
	logger.Printf("%s dns listening on %s", *name, pc.LocalAddr())
	go func() {
		<-ctx.Done()
		srv.Shutdown()
	}()
	if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil {
		return err
	}
	logger.Printf("%s dns stopped", *name)
	return nil
}
