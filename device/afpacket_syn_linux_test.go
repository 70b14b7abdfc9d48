//go:build linux

package device_test

import (
	"bytes"
	"encoding/binary"
	"testing"
	"time"

	"github.com/lvsd/lvsd/device"
	"github.com/lvsd/lvsd/device/devicetest"
)

// tcpFrame returns an IPv4/TCP frame (v6: IPv6/TCP) to lo's MAC with the
// given TCP flags and source port; frag makes it a non-first IPv4 fragment
// (no TCP header there: its "flags" byte is payload).
func tcpFrame(v6 bool, flags byte, sport int, frag bool) []byte {
	var f []byte
	var tcp []byte
	if v6 {
		f = make([]byte, 14+40+20)
		f[12], f[13] = 0x86, 0xdd
		ip := f[14:54]
		ip[0], ip[6], ip[7] = 0x60, 6, 64
		binary.BigEndian.PutUint16(ip[4:], 20)
		ip[8], ip[9], ip[23] = 0x20, 0x01, 2 // 2001:db8::2 -> 2001:db8::1
		ip[10], ip[11] = 0x0d, 0xb8
		ip[24], ip[25], ip[26], ip[27], ip[39] = 0x20, 0x01, 0x0d, 0xb8, 1
		tcp = f[54:]
	} else {
		f = make([]byte, 14+20+20)
		f[12], f[13] = 0x08, 0x00
		ip := f[14:34]
		ip[0], ip[8], ip[9] = 0x45, 64, 6
		binary.BigEndian.PutUint16(ip[2:], 40)
		if frag {
			binary.BigEndian.PutUint16(ip[6:], 100) // offset 800
		}
		copy(ip[12:], []byte{192, 0, 2, 2})
		copy(ip[16:], []byte{192, 0, 2, 1})
		tcp = f[34:]
	}
	copy(f, devicetest.LoMAC)
	copy(f[6:], devicetest.PeerMAC)
	binary.BigEndian.PutUint16(tcp[0:], uint16(sport))
	binary.BigEndian.PutUint16(tcp[2:], 80)
	tcp[12], tcp[13] = 5<<4, flags
	return f
}

// isSYN reports whether f is a TCP SYN (SYN set, ACK clear).
func isSYN(f []byte) bool {
	switch {
	case f[12] == 0x08 && f[23] == 6 && binary.BigEndian.Uint16(f[20:])&0x1fff == 0:
		return f[14+int(f[14]&0xf)*4+13]&0x12 == 0x02
	case f[12] == 0x86 && f[20] == 6:
		return f[67]&0x12 == 0x02
	}
	return false
}

// TestPacketSYNSteering: a SYN flood (IPv4 and IPv6) that overflows the
// device's receive buffer loses none of the frames that come after it and
// are not SYNs (ACKs, SYN-ACKs, UDP, a SYN-flagged byte in a non-first
// fragment): they wait in their own queue, and the next ReadBatch returns
// them first, leaving a quarter of the batch to SYNs. KernelDrops counts
// the flood's excess in the SYN queue, and nothing in the other. With one queue for all, the flood's backlog would make the
// kernel drop the later frames.
func TestPacketSYNSteering(t *testing.T) {
	lab := devicetest.NewLoopback(t, device.AFPacketOptions{})
	d := lab.Devs[0]
	const flood = 40_000 // several times what a 4 MiB buffer holds
	syn := tcpFrame(false, 0x02, 1, false)
	for i := range flood {
		binary.BigEndian.PutUint16(syn[34:], uint16(1+i%60000))
		if i%5 == 0 {
			lab.Inject(t, tcpFrame(true, 0x02, 1+i%60000, false))
			continue
		}
		lab.Inject(t, syn)
	}
	var others [][]byte
	for i := range 30 {
		others = append(others, udpFrame(t, devicetest.LoMAC, 2000+i), tcpFrame(false, 0x10, 3000+i, false),
			tcpFrame(true, 0x18, 4000+i, false), tcpFrame(false, 0x02, 5000+i, true),
			tcpFrame(false, 0x12, 6000+i, false), tcpFrame(true, 0x12, 7000+i, false))
	}
	lab.Inject(t, others...)

	// The first batch: the established queue's frames fill three quarters,
	// in order; SYNs the rest.
	bufs, sizes := newBufs(device.AFPacketBatch, 2048)
	n, err := d.ReadBatch(bufs, sizes)
	if err != nil || n != device.AFPacketBatch {
		t.Fatalf("first ReadBatch: %d frames, err %v; want a full batch", n, err)
	}
	reserve := device.AFPacketBatch / 4
	for i := range n {
		f := bufs[i][:sizes[i]]
		if i < n-reserve {
			if !bytes.Equal(f, others[i]) {
				t.Errorf("slot %d: got % x, want the non-SYN frame % x", i, f, others[i])
			}
		} else if !isSYN(f) {
			t.Errorf("slot %d: got % x, want a SYN", i, f)
		}
	}

	// The rest: every other frame arrives, and no SYN before it.
	got := n - reserve
	syns := reserve
	watchdog := time.AfterFunc(5*time.Second, func() { d.Close() })
	defer watchdog.Stop()
	for got < len(others) {
		n, err := d.ReadBatch(bufs, sizes)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d non-SYN frames: %v", got, len(others), err)
		}
		for i := range n {
			f := bufs[i][:sizes[i]]
			if isSYN(f) {
				syns++
				continue
			}
			if !bytes.Equal(f, others[got]) {
				t.Fatalf("non-SYN frame %d: got % x, want % x", got, f, others[got])
			}
			got++
		}
	}
	est, synDrops := d.KernelDrops()
	t.Logf("%d non-SYN frames, all in order; %d SYNs read with them; kernel drops: %d established, %d SYN", got, syns, est, synDrops)
	// The flood overflowed its own queue, and only that one.
	if est != 0 || synDrops == 0 || synDrops >= flood {
		t.Errorf("kernel drops: %d in the established queue (want 0), %d in the SYN queue (want 1 to %d)", est, synDrops, flood-1)
	}
}
