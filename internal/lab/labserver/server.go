package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"
)

// Response headers that carry what the body of GET / carries, for answers
// whose body is something else (/bytes, /upload, /sha256).
const (
	headerServer = "X-Lab-Server" // the real server's -name
	headerClient = "X-Lab-Client" // the client ip:port the real server saw
)

// maxBytes caps /bytes?n=.
const maxBytes = 1 << 30

func runHTTP(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("labserver http", flag.ContinueOnError)
	listen := fs.String("listen", ":8080", "address to listen on")
	name := fs.String("name", "rs", "server name, the first word of every answer")
	cert := fs.String("cert", "", "with -key: serve HTTPS with this PEM certificate")
	key := fs.String("key", "", "with -cert: the certificate's PEM private key")
	ports := fs.Int("ports", 1, "listen on this many consecutive ports from -listen's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := log.New(os.Stdout, "", log.Ltime|log.Lmicroseconds)
	host, port, err := net.SplitHostPort(*listen)
	if err != nil {
		return err
	}
	first, err := strconv.Atoi(port)
	if err != nil || *ports < 1 || first+*ports-1 > 65535 {
		return fmt.Errorf("bad -listen %q or -ports %d", *listen, *ports)
	}
	var lns []net.Listener
	for i := range *ports {
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(first+i)))
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return err
		}
		lns = append(lns, ln)
	}
	srv := &http.Server{
		Handler:           handler(*name, logger),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          logger,
	}
	kind := "http"
	if *cert != "" {
		kind = "https"
	}
	logger.Printf("%s %s listening on %s (%d ports)", *name, kind, lns[0].Addr(), len(lns))
	done := make(chan error, len(lns))
	for _, ln := range lns {
		go func() {
			if *cert != "" {
				done <- srv.ServeTLS(ln, *cert, *key)
			} else {
				done <- srv.Serve(ln)
			}
		}()
	}
	select {
	case err := <-done:
		srv.Close()
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	for range lns {
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	logger.Printf("%s http stopped", *name)
	return nil
}

func handler(name string, logger *log.Logger) http.Handler {
	mux := http.NewServeMux()
	seen := func(w http.ResponseWriter, r *http.Request, detail string) {
		w.Header().Set(headerServer, name)
		w.Header().Set(headerClient, r.RemoteAddr)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		logger.Printf("%s http %s %s from %s%s", name, r.Method, r.URL.RequestURI(), r.RemoteAddr, detail)
	}
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
		if err != nil || n < 0 || n > maxBytes {
			seen(w, r, " bad n")
			http.Error(w, fmt.Sprintf("n must be 0..%d", maxBytes), http.StatusBadRequest)
			return
		}
		seen(w, r, fmt.Sprintf(" sending %d bytes", n))
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		io.Copy(w, io.LimitReader(pattern{}, n))
	})
	mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			seen(w, r, fmt.Sprintf(" upload failed after %d bytes: %v", n, err))
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		seen(w, r, fmt.Sprintf(" received %d bytes", n))
		fmt.Fprintf(w, "%s %s %d\n", name, r.RemoteAddr, n)
	})
	mux.HandleFunc("POST /sha256", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			seen(w, r, fmt.Sprintf(" upload failed after %d bytes: %v", n, err))
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		seen(w, r, fmt.Sprintf(" received %d bytes", n))
		fmt.Fprintf(w, "%s %s %d %x\n", name, r.RemoteAddr, n, h.Sum(nil))
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		seen(w, r, "")
		fmt.Fprintf(w, "%s %s\n", name, r.RemoteAddr)
	})
	return mux
}

// pattern is an endless reader of a recognisable byte pattern.
type pattern struct{}

func (pattern) Read(p []byte) (int, error) {
	const s = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-_\n"
	for i := range p {
		p[i] = s[i%len(s)]
	}
	return len(p), nil
}

func runUDP(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("labserver udp", flag.ContinueOnError)
	listen := fs.String("listen", ":5353", "address to listen on")
	name := fs.String("name", "rs", "server name, prefixed to every echo")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logger := log.New(os.Stdout, "", log.Ltime|log.Lmicroseconds)
	pc, err := net.ListenPacket("udp", *listen)
	if err != nil {
		return err
	}
	logger.Printf("%s udp listening on %s", *name, pc.LocalAddr())
	stopped := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			pc.Close()
		case <-stopped:
		}
	}()
	defer close(stopped)
	echo := newUDPEcho(pc.(*net.UDPConn))
	buf := make([]byte, 65536)
	for {
		n, from, to, err := echo.read(buf)
		if err != nil {
			if ctx.Err() != nil {
				logger.Printf("%s udp stopped", *name)
				return nil
			}
			return err
		}
		logger.Printf("%s udp from %s %d bytes", *name, from, n)
		// From the address the datagram went to (a VIP on lo).
		reply := append([]byte(*name+" "), buf[:n]...)
		if err := echo.write(reply, from, to); err != nil {
			logger.Printf("%s udp reply to %s: %v", *name, from, err)
		}
	}
}
