package forward_test

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/lvsd/lvsd/forward"
	"github.com/lvsd/lvsd/lvs"
)

// fuzzEnv has a service of every method and family; connections accumulate
// across inputs (up to 256) so that replies can find them.
func fuzzEnv(t testing.TB, link forward.Framing) *env {
	e := newEnv(t, envOpts{link: link, max: 256},
		svcSpec{vip: vip4, port: 84, proto: lvs.TCP, dest: rs(rip4, 8084, lvs.NAT)},
		svcSpec{vip: vip6, port: 84, proto: lvs.TCP, dest: rs(rip6, 8084, lvs.NAT)},
		svcSpec{vip: vip4, port: 80, proto: lvs.TCP, dest: rs(rip4, 8080, lvs.NAT)},
		svcSpec{vip: vip4, port: 53, proto: lvs.UDP, dest: rs(rip4, 5353, lvs.NAT)},
		svcSpec{vip: vip6, port: 443, proto: lvs.TCP, dest: rs(rip6, 8443, lvs.NAT)},
		svcSpec{vip: vip6, port: 53, proto: lvs.UDP, dest: rs(rip6, 53, lvs.NAT)},
		svcSpec{vip: vip4, port: 81, proto: lvs.TCP, dest: rs(rip4, 81, lvs.DR)},
		svcSpec{vip: vip4, port: 82, proto: lvs.TCP, dest: rs(rip4, 82, lvs.TUN), tunSrc: dip4},
		svcSpec{vip: vip6, port: 82, proto: lvs.UDP, dest: rs(rip4, 82, lvs.TUN), tunSrc: dip4},
	)
	// Port 84: the SYN proxy.
	e.svc(vip4, 84, lvs.TCP).Synproxy = true
	e.svc(vip6, 84, lvs.TCP).Synproxy = true
	return e
}

// FuzzProcess feeds arbitrary frames and virtio headers to Process on both
// link types. Invariants: no panic; a transmitted frame lies within the
// buffer and starts with a valid IP header (IPv4 checksum included); a TCP or
// UDP checksum that was valid on input is valid on output.
func FuzzProcess(f *testing.F) {
	seeds := []pkt{
		{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, payload: "x"},
		{srcMAC: rsMAC, src: ap(rip4, 8080), dst: ap(cli4, 40000), flags: syn | ack},
		{src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP, payload: "q"},
		{src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP, zeroUDPCsum: true},
		{src: ap(cli6, 40000), dst: ap(vip6, 443), flags: syn, payload: "x"},
		{src: ap(cli6, 40000), dst: ap(vip6, 53), proto: lvs.UDP},
		{src: ap(cli4, 40000), dst: ap(vip4, 81), flags: syn},
		{src: ap(cli4, 40000), dst: ap(vip4, 82), flags: syn, df: true},
		{src: ap(cli6, 40000), dst: ap(vip6, 82), proto: lvs.UDP},
		{src: ap(cli4, 40000), dst: ap(vip4, 80), flags: syn, ipOptions: true},
		{src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP, fragOff: 10},
		{src: ap(cli4, 40000), dst: ap(vip4, 53), proto: lvs.UDP, mf: true},
		{src: ap(cli4, 40000), dst: ap(vip4, 84), flags: syn},
		{src: ap(cli4, 40000), dst: ap(vip4, 84), flags: ack, seq: 1001},
		{srcMAC: rsMAC, src: ap(rip4, 8084), dst: ap(cli4, 40000), flags: syn | ack},
		{src: ap(cli6, 40000), dst: ap(vip6, 84), flags: syn},
	}
	for _, s := range seeds {
		for _, link := range []forward.Framing{forward.Ethernet, forward.IP} {
			s.link = link
			frame := s.build(f)
			f.Add(frame, link == forward.IP, uint8(0), uint8(0), uint16(0), uint16(0), uint16(0))
			h := makePartial(link, append([]byte(nil), frame...))
			f.Add(frame, link == forward.IP, h.Flags, uint8(0), h.CsumStart, h.CsumOffset, uint16(0))
			f.Add(frame, link == forward.IP, h.Flags, uint8(forward.VirtioNetHdrGSOTCPv4), h.CsumStart, h.CsumOffset, uint16(1400))
		}
	}
	envs := map[bool]*env{false: fuzzEnv(f, forward.Ethernet), true: fuzzEnv(f, forward.IP)}
	forward.WarmAlways(f)

	f.Fuzz(func(t *testing.T, frame []byte, ipLink bool, flags, gso uint8, csumStart, csumOffset, gsoSize uint16) {
		e := envs[ipLink]
		link := forward.Ethernet
		if ipLink {
			link = forward.IP
		}
		vnet := forward.VNetHdr{Flags: flags, GSOType: gso, CsumStart: csumStart, CsumOffset: csumOffset, GSOSize: gsoSize}
		inSumOK := validL4Sum(link, frame, vnet)

		buf := make([]byte, headroom+len(frame)+8)
		copy(buf[headroom:], frame)
		em := &fuzzEmitter{t: t, link: link}
		// The warm pass of a batch reader first (Worker.Warm): it must
		// take any frame, and leave Process's decision to Process.
		e.w.Warm([][]byte{buf, buf}, []int{headroom + len(frame), headroom + len(frame)}, headroom)
		p := &forward.Packet{Buf: buf, Off: headroom, Len: len(frame), VNet: vnet, Emit: em}
		v := e.w.Process(p)
		switch v {
		case forward.Transmit:
		case forward.ToStack:
			if !bytes.Equal(p.Frame(), frame) || p.VNet != vnet {
				t.Fatal("frame for the stack was modified")
			}
			return
		default:
			return
		}
		if p.Off < 0 || p.Len < 0 || p.Off+p.Len > len(buf) {
			t.Fatalf("frame out of the buffer: Off %d Len %d of %d", p.Off, p.Len, len(buf))
		}
		ip := checkTransmitted(t, link, p.Frame())
		if ip[0]>>4 == 4 && ip[9] == 1 || ip[0]>>4 == 6 && ip[6] == 58 {
			return // an ICMP error about the packet (checkTransmitted checked it)
		}
		if inSumOK {
			if ip[0]>>4 == 4 && (ip[9] == 4 || ip[9] == 41) { // TUN: check the inner packet
				ip = ip[20:]
			}
			if !validL4SumIP(ip) {
				t.Fatal("valid L4 checksum became invalid")
			}
		}
	})
}

// checkTransmitted checks that a frame Process wrote starts with a valid IP
// header (IPv4 checksum included; an ICMP error's checksum too) and returns
// its IP packet.
func checkTransmitted(t *testing.T, link forward.Framing, out []byte) []byte {
	ip := out
	if link == forward.Ethernet {
		if len(out) < 14 {
			t.Fatalf("transmitted frame of %d bytes", len(out))
		}
		ip = out[14:]
	}
	if len(ip) < 20 {
		t.Fatalf("transmitted IP packet of %d bytes", len(ip))
	}
	switch ip[0] >> 4 {
	case 4:
		hl := int(ip[0]&0xf) * 4
		tl := int(binary.BigEndian.Uint16(ip[2:]))
		if hl < 20 || tl < hl || tl > len(ip) {
			t.Fatalf("transmitted IPv4 header invalid: IHL %d total %d of %d", hl, tl, len(ip))
		}
		if fold(onesSum(ip[:hl], 0)) != 0xffff {
			t.Fatal("transmitted IPv4 header checksum invalid")
		}
		if ip[9] == 1 && fold(onesSum(ip[hl:tl], 0)) != 0xffff {
			t.Fatal("transmitted ICMP checksum invalid")
		}
	case 6:
		if len(ip) < 40 || 40+int(binary.BigEndian.Uint16(ip[4:])) > len(ip) {
			t.Fatal("transmitted IPv6 header invalid")
		}
	default:
		t.Fatalf("transmitted IP version %d", ip[0]>>4)
	}
	return ip
}

// fuzzEmitter checks every extra frame Process writes (segments,
// fragments).
type fuzzEmitter struct {
	t    *testing.T
	link forward.Framing
}

func (f *fuzzEmitter) Emit(buf []byte, off, n int) error {
	if off < forward.EmitHeadroom || n < 0 || off+n > len(buf) {
		f.t.Fatalf("Emit(off %d, n %d) of a %d-byte buffer", off, n, len(buf))
	}
	checkTransmitted(f.t, f.link, buf[off:off+n])
	return nil
}

// validL4Sum reports whether frame is an unfragmented TCP or UDP packet
// without extension headers whose L4 checksum is complete and valid.
func validL4Sum(link forward.Framing, frame []byte, vnet forward.VNetHdr) bool {
	if vnet.Flags&forward.VirtioNetHdrFNeedsCsum != 0 {
		return false
	}
	ip := frame
	if link == forward.Ethernet {
		if len(frame) < 14 {
			return false
		}
		ip = frame[14:]
	}
	return validL4SumIP(ip)
}

func validL4SumIP(ip []byte) bool {
	if len(ip) < 40 {
		return false
	}
	switch ip[0] >> 4 {
	case 4:
		hl, tl := int(ip[0]&0xf)*4, int(binary.BigEndian.Uint16(ip[2:]))
		if hl < 20 || tl < hl+8 || tl > len(ip) || binary.BigEndian.Uint16(ip[6:])&0x3fff != 0 {
			return false
		}
		ip = ip[:tl]
		if ip[9] != 6 && ip[9] != 17 {
			return false
		}
	case 6:
		n := 40 + int(binary.BigEndian.Uint16(ip[4:]))
		if n < 48 || n > len(ip) || ip[6] != 6 && ip[6] != 17 {
			return false
		}
		ip = ip[:n]
	default:
		return false
	}
	l4 := l4Of(ip)
	if csumOffset(ip) == 6 && l4[6] == 0 && l4[7] == 0 {
		return false // no UDP checksum
	}
	if csumOffset(ip) == 16 && len(l4) < 20 {
		return false
	}
	return fold(onesSum(l4, pseudoSum(ip))) == 0xffff
}
