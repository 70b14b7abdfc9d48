package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/lvsd/lvsd/capture"
	"github.com/lvsd/lvsd/control"
)

const captureUsage = `usage: lvsd capture -w FILE [-format pcapng|pcap] [-duration D] [-snaplen N] [-control SOCK] [FILTER]

Captures, through the control socket of a running lvsd, the frames it reads
and the frames it writes after the rewrite, on every interface, into FILE
(pcapng by default: interfaces "NAME in" and "NAME out" keep the direction;
pcap has one link type and loses it). FILTER is evaluated in lvsd: words
ANDed, tcp | udp | icmp | icmp6, host ADDR, port N, optionally joined by
"and". lvsd copies frames into a bounded ring and never waits for this
reader: frames it had no room for are counted as missed. The capture ends
after -duration, on SIGINT/SIGTERM, or when lvsd stops; a file that cannot be
written ends it too.
`

// runCapture is `lvsd capture`.
func runCapture(args []string) int {
	fs := flag.NewFlagSet("lvsd capture", flag.ContinueOnError)
	fs.Usage = func() { fmt.Fprint(fs.Output(), captureUsage); fs.PrintDefaults() }
	out := fs.String("w", "", "the file to write (required)")
	format := fs.String("format", "pcapng", "file format: pcapng or pcap")
	dur := fs.Duration("duration", 0, "stop after this long (0: until interrupted)")
	snap := fs.Int("snaplen", 0, "bytes kept per frame (0: lvsd's default, 2048)")
	ctl := fs.String("control", "", "control socket of the lvsd to capture on")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	filter := strings.Join(fs.Args(), " ")
	if *out == "" {
		fmt.Fprintln(os.Stderr, "lvsd capture: -w FILE is required")
		return 2
	}
	if *format != "pcapng" && *format != "pcap" {
		fmt.Fprintf(os.Stderr, "lvsd capture: -format %q: want pcapng or pcap\n", *format)
		return 2
	}
	if _, err := capture.ParseFilter(filter); err != nil {
		fmt.Fprintf(os.Stderr, "lvsd capture: %v\n", err)
		return 2
	}
	f, err := os.Create(*out)
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd capture: %v\n", err)
		return 1
	}
	defer f.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s, err := control.Capture(ctx, controlFlag(*ctl), control.CaptureParams{Filter: filter, Duration: *dur, SnapLen: *snap})
	if err != nil {
		fmt.Fprintf(os.Stderr, "lvsd capture: %v\n", err)
		var bad *control.BadRequestError
		if errors.As(err, &bad) {
			return 2
		}
		return 1
	}
	// Closing the stream is what stops the capture in lvsd.
	defer s.Body.Close()
	n, werr := copyCapture(s.Body, f, *format)
	if werr == nil {
		werr = f.Sync()
	}
	if werr != nil {
		fmt.Fprintf(os.Stderr, "lvsd capture: write %s: %v; capture stopped\n", *out, werr)
		return 1
	}
	if ctx.Err() != nil {
		fmt.Fprintf(os.Stderr, "%d frames written to %s (interrupted)\n", n, *out)
		return 0
	}
	written, missed, serr := s.Result()
	if serr != nil {
		fmt.Fprintf(os.Stderr, "lvsd capture: lvsd: %v\n", serr)
		return 1
	}
	fmt.Fprintf(os.Stderr, "%d frames written to %s; %d missed by lvsd (ring full)\n", written, *out, missed)
	return 0
}

// copyCapture copies the pcapng stream r into w as format, packet by
// packet, so that the file holds whole packets whenever it stops. It
// returns the packets written, and an error only for the file: the stream
// ending early (lvsd stopped, the capture interrupted) is the end.
func copyCapture(r io.Reader, w io.Writer, format string) (int, error) {
	nr, err := pcapgo.NewNgReader(r, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return 0, nil // no stream: nothing to write
	}
	var ngw *pcapgo.NgWriter
	var pw *pcapgo.Writer
	start := func() error {
		if format == "pcap" {
			first, _ := nr.Interface(0)
			lt := first.LinkType
			for i := 0; i < nr.NInterfaces(); i++ {
				if intf, _ := nr.Interface(i); intf.LinkType != lt {
					return fmt.Errorf("pcap holds one link type and lvsd's interfaces have %v and %v: use -format pcapng", lt, intf.LinkType)
				}
			}
			pw = pcapgo.NewWriterNanos(w)
			return pw.WriteFileHeader(65535+14, lt)
		}
		var err error
		for i := 0; i < nr.NInterfaces(); i++ {
			intf, _ := nr.Interface(i)
			intf.TimestampResolution = 9
			if i == 0 {
				ngw, err = pcapgo.NewNgWriterInterface(w, intf, pcapgo.NgWriterOptions{
					SectionInfo: pcapgo.NgSectionInfo{Application: "lvsd capture"}})
			} else {
				_, err = ngw.AddInterface(intf)
			}
			if err != nil {
				return err
			}
		}
		return ngw.Flush()
	}
	n := 0
	for {
		data, ci, err := nr.ReadPacketData()
		if err != nil {
			if n == 0 && ngw == nil && pw == nil {
				if serr := start(); serr != nil {
					return n, serr
				}
			}
			return n, nil
		}
		if n == 0 {
			if err := start(); err != nil {
				return n, err
			}
		}
		ci.CaptureLength = len(data)
		if pw != nil {
			err = pw.WritePacket(gopacket.CaptureInfo{Timestamp: ci.Timestamp, CaptureLength: len(data), Length: ci.Length}, data)
		} else {
			err = ngw.WritePacket(ci, data)
			if err == nil {
				err = ngw.Flush()
			}
		}
		if err != nil {
			return n, err
		}
		n++
	}
}
