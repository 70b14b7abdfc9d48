//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// tool is a program the suite runs, with the Debian package that has it.
type tool struct {
	prog    string   // on PATH
	pkg     string   // Debian package
	version []string // arguments that print its version
	usedBy  string   // what needs it, for the report
}

var tools = []tool{
	{"iperf3", "iperf3", []string{"--version"}, "tcp1 and tcp4 (TCP throughput)"},
	{"iperf", "iperf", []string{"-v"}, "udp (64-byte datagram generator, iperf 2)"},
	{"wrk", "wrk", []string{"-v"}, "http (load generator)"},
	{"nginx", "nginx-light", []string{"-v"}, "http (real servers)"},
	{"haproxy", "haproxy", []string{"-v"}, "the haproxy contestant"},
	{"nft", "nftables", []string{"--version"}, "the nft contestant and the UDP sink"},
}

// installTools installs the Debian packages of missing programs (apt-get
// update once, then one apt-get install), unless -no-install, and records
// each program's version, or why it is missing.
func (b *bench) installTools() {
	var pkgs []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.prog); err != nil {
			pkgs = append(pkgs, t.pkg)
		}
	}
	if len(pkgs) > 0 && !b.f.noInstall {
		if _, err := exec.LookPath("apt-get"); err != nil {
			logf("missing %s and no apt-get: those contestants and workloads are n/a", strings.Join(pkgs, " "))
		} else {
			logf("installing %s (apt-get)", strings.Join(pkgs, " "))
			if out, err := runHost(b.ctx, 10*time.Minute, "apt-get", "update", "-q"); err != nil {
				logf("apt-get update failed: %v\n%s", err, tailString(out, 2000))
			}
			args := append([]string{"install", "-y", "-q", "--no-install-recommends"}, pkgs...)
			if out, err := runHost(b.ctx, 15*time.Minute, "apt-get", args...); err != nil {
				logf("apt-get install failed: %v\n%s", err, tailString(out, 2000))
			}
		}
	}
	for _, t := range tools {
		if _, err := exec.LookPath(t.prog); err != nil {
			b.missing[t.prog] = fmt.Sprintf("%s not installed (Debian package %s)", t.prog, t.pkg)
			continue
		}
		out, _ := runHost(b.ctx, 10*time.Second, t.prog, t.version...)
		b.tools[t.prog] = firstLine(out)
	}
}

// machine describes the machine for the report.
type machine struct {
	CPU     string
	Cores   int
	Kernel  string
	OS      string
	Go      string
	Memory  string
	Date    string
	Virt    string
	LvsdVer string
}

func describeMachine(ctx context.Context, lvsd string) machine {
	m := machine{Cores: runtime.NumCPU(), Go: runtime.Version(), Date: time.Now().UTC().Format("2006-01-02 15:04 UTC")}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var u syscall.Utsname
	if syscall.Uname(&u) == nil {
		m.Kernel = charsToString(u.Release[:]) + " " + charsToString(u.Machine[:])
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		fmt.Sscanf(strings.TrimPrefix(firstLine(string(b)), "MemTotal:"), "%d", &kb)
		m.Memory = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	var virt []string
	if out, err := runHost(ctx, 5*time.Second, "systemd-detect-virt"); err == nil {
		virt = append(virt, "systemd-detect-virt: "+strings.TrimSpace(out))
	}
	if strings.Contains(readFileString("/proc/cpuinfo"), " hypervisor") {
		virt = append(virt, "the CPU reports a hypervisor")
	}
	m.Virt = strings.Join(virt, "; ")
	if lvsd != "" {
		out, _ := runHost(ctx, 5*time.Second, lvsd, "version")
		m.LvsdVer = strings.TrimSpace(out)
	}
	if out, err := runHost(ctx, 5*time.Second, "git", "describe", "--always", "--dirty"); err == nil {
		m.LvsdVer += " (git " + strings.TrimSpace(out) + ")"
	}
	return m
}

func charsToString[T int8 | uint8](ca []T) string {
	var b []byte
	for _, c := range ca {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return string(b)
}

func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// runHost runs a command in the bench's own namespace, in its own process
// group (killed with its group at timeout or when ctx ends), and returns
// its combined output.
func runHost(ctx context.Context, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return out.String(), nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[:i])
	}
	return s
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
