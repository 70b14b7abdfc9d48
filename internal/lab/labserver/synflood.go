package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"
)

// floodReport is what `synflood` prints when it ends, on one line.
// internal/lab's FloodResult decodes it: keep the JSON names in step.
type floodReport struct {
	Sent    int64   `json:"sent"`
	Errors  int64   `json:"errors"`
	Seconds float64 `json:"seconds"`
}

// floodSources is the only prefix the flood's source addresses come from
// (the lab's, RFC 2544). Sources below floodFirst, the reference labs' own
// subnets 198.18.0.0/22, are skipped: a flood that claims to come from the
// client or a real server is another test.
var (
	floodSources = netip.MustParsePrefix("198.18.0.0/15")
	floodFirst   = uint32(198)<<24 | 18<<16 | 4<<8 // 198.18.4.0
	floodLast    = uint32(198)<<24 | 19<<16 | 255<<8 | 255
)

// maxFloodFrames and maxFloodTime bound a flood whatever the flags say.
const (
	maxFloodFrames = 100_000_000
	maxFloodTime   = 120 * time.Second
)

// runSYNFlood sends TCP SYNs from random sources within 198.18.4.0 -
// 198.19.255.255 and random ports to -dst:-port as Ethernet frames on -dev
// (AF_PACKET, to -dst-mac), at -rate frames per second for -duration or
// -count frames, whichever ends first.
func runSYNFlood(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("labserver synflood", flag.ContinueOnError)
	dev := fs.String("dev", "", "interface to send on (required)")
	dstMAC := fs.String("dst-mac", "", "destination MAC: the director's (required)")
	dst := fs.String("dst", "", "destination IPv4 address: the VIP (required)")
	port := fs.Int("port", 80, "destination port")
	rate := fs.Int("rate", 10000, "frames per second; 0 is as fast as possible")
	duration := fs.Duration("duration", 5*time.Second, "how long to flood (at most 2m)")
	count := fs.Int64("count", 10_000_000, "stop after this many frames (at most 1e8)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dev == "" || *dstMAC == "" || *dst == "" {
		return errors.New("need -dev, -dst-mac and -dst")
	}
	mac, err := net.ParseMAC(*dstMAC)
	if err != nil || len(mac) != 6 {
		return fmt.Errorf("-dst-mac %q: not an Ethernet address", *dstMAC)
	}
	vip, err := netip.ParseAddr(*dst)
	if err != nil || !vip.Is4() || !floodSources.Contains(vip) {
		return fmt.Errorf("-dst %q: want an IPv4 address in %v", *dst, floodSources)
	}
	if *port < 1 || *port > 65535 || *rate < 0 || *duration <= 0 || *duration > maxFloodTime || *count < 1 || *count > maxFloodFrames {
		return errors.New("-port, -rate, -duration or -count out of range")
	}
	ifi, err := net.InterfaceByName(*dev)
	if err != nil {
		return err
	}
	s, err := openRawSender(ifi.Index)
	if err != nil {
		return err
	}
	defer s.close()

	var frame [58]byte
	synFrame(frame[:], ifi.HardwareAddr, mac, vip.As4(), uint16(*port))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(os.Getpid())))
	var rep floodReport
	start := time.Now()
	end := start.Add(*duration)
	// Paced in 1 ms slices: each sends what the rate owes since start.
	for rep.Sent+rep.Errors < *count && ctx.Err() == nil {
		now := time.Now()
		if !now.Before(end) {
			break
		}
		due := *count
		if *rate > 0 {
			due = min(due, int64(now.Sub(start).Seconds()*float64(*rate))+1)
		}
		for rep.Sent+rep.Errors < due {
			src := floodFirst + rng.Uint32N(floodLast-floodFirst+1)
			setSource(frame[:], src, uint16(1024+rng.IntN(64512)), rng.Uint32())
			if err := s.send(frame[:]); err != nil {
				rep.Errors++
			} else {
				rep.Sent++
			}
			if (rep.Sent+rep.Errors)%256 == 0 && time.Now().After(end) {
				break
			}
		}
		if *rate > 0 {
			time.Sleep(time.Millisecond)
		}
	}
	rep.Seconds = time.Since(start).Seconds()
	return json.NewEncoder(os.Stdout).Encode(rep)
}

// synFrame writes an Ethernet/IPv4/TCP SYN with an MSS option (1460) into
// f (58 bytes); setSource fills in the source, the sequence number and the
// checksums.
func synFrame(f []byte, src, dst net.HardwareAddr, vip [4]byte, port uint16) {
	copy(f[0:], dst)
	copy(f[6:], src)
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 6
	binary.BigEndian.PutUint16(ip[2:], 44)
	copy(ip[16:], vip[:])
	tcp := f[34:58]
	binary.BigEndian.PutUint16(tcp[2:], port)
	tcp[12] = 6 << 4 // 24-byte header
	tcp[13] = 0x02   // SYN
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	tcp[20], tcp[21] = 2, 4 // MSS
	binary.BigEndian.PutUint16(tcp[22:], 1460)
}

func setSource(f []byte, src uint32, sport uint16, seq uint32) {
	ip, tcp := f[14:34], f[34:58]
	binary.BigEndian.PutUint32(ip[12:], src)
	binary.BigEndian.PutUint16(ip[4:], uint16(seq>>16)) // IP id
	binary.BigEndian.PutUint16(ip[10:], 0)
	binary.BigEndian.PutUint16(ip[10:], ^fold(sum(ip, 0)))
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint16(tcp[16:], 0)
	pseudo := sum(ip[12:20], 6+uint32(len(tcp)))
	binary.BigEndian.PutUint16(tcp[16:], ^fold(sum(tcp, pseudo)))
}

func sum(b []byte, acc uint32) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		acc += uint32(b[i])<<8 | uint32(b[i+1])
	}
	return acc
}

func fold(acc uint32) uint16 {
	for acc > 0xffff {
		acc = acc>>16 + acc&0xffff
	}
	return uint16(acc)
}
