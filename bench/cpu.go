//go:build linux

package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture Go supports.
const clockTicks = 100

// cpuUse is the CPU time spent during one measured run, in seconds.
type cpuUse struct {
	// balancer is the balancer's CPU time: utime+stime of the lvsd or
	// haproxy process (all threads); for the kernel contestant, the
	// machine's system+irq+softirq time (every namespace's kernel work,
	// the generator's and the servers' included). -1 when not measured.
	balancer float64
	// system is the machine's system+irq+softirq time, for every contestant.
	system float64
	// busy is the machine's non-idle time (everything but idle and iowait).
	busy float64
	// helpers is the CPU time of the contestant's helper processes on the
	// real servers (lvsd realserver); -1 when there are none.
	helpers float64
	// wall is the run's length.
	wall float64
}

// procStat is a sample of /proc/stat's first line, in ticks.
type procStat struct {
	user, nice, system, idle, iowait, irq, softirq, steal uint64
}

func readProcStat() (procStat, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return procStat{}, err
	}
	f := strings.Fields(firstLine(string(b)))
	if len(f) < 9 || f[0] != "cpu" {
		return procStat{}, fmt.Errorf("/proc/stat: unexpected first line %q", firstLine(string(b)))
	}
	var v [8]uint64
	for i := range v {
		v[i], _ = strconv.ParseUint(f[i+1], 10, 64)
	}
	return procStat{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}, nil
}

func (s procStat) kernel() uint64 { return s.system + s.irq + s.softirq }
func (s procStat) total() uint64 {
	return s.user + s.nice + s.system + s.idle + s.iowait + s.irq + s.softirq + s.steal
}
func (s procStat) idleAll() uint64 { return s.idle + s.iowait }

// readProcCPU returns a process's utime+stime (all its threads), in ticks.
func readProcCPU(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseProcPidStat(string(b))
}

// parseProcPidStat reads utime (field 14) and stime (field 15) of
// /proc/PID/stat; the command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseProcPidStat(s string) (uint64, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/PID/stat: no ')' in %q", s)
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state): utime is f[11], stime f[12].
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/PID/stat: %d fields after the name", len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/PID/stat: bad utime/stime %q %q", f[11], f[12])
	}
	return u + st, nil
}

// measureCPU runs fn and returns the CPU time spent meanwhile.
func (b *bench) measureCPU(r *running, fn func()) cpuUse {
	var p0, p1 uint64
	var pErr error
	if r.pid > 0 {
		p0, pErr = readProcCPU(r.pid)
	}
	helpers := func() (uint64, bool) {
		var sum uint64
		for _, p := range r.helpers {
			v, err := readProcCPU(p.Pid())
			if err != nil {
				return 0, false
			}
			sum += v
		}
		return sum, len(r.helpers) > 0
	}
	h0, hOK := helpers()
	s0, sErr := readProcStat()
	t0 := time.Now()
	fn()
	wall := time.Since(t0).Seconds()
	s1, sErr1 := readProcStat()
	if r.pid > 0 && pErr == nil {
		p1, pErr = readProcCPU(r.pid)
	}
	h1, hOK1 := helpers()
	u := cpuUse{balancer: -1, system: -1, busy: -1, helpers: -1, wall: wall}
	if hOK && hOK1 {
		u.helpers = float64(h1-h0) / clockTicks
	}
	if sErr == nil && sErr1 == nil {
		u.system = float64(s1.kernel()-s0.kernel()) / clockTicks
		u.busy = float64((s1.total()-s1.idleAll())-(s0.total()-s0.idleAll())) / clockTicks
	}
	switch {
	case r.pid > 0 && pErr == nil:
		u.balancer = float64(p1-p0) / clockTicks
	case r.kernel:
		u.balancer = u.system
	}
	return u
}
