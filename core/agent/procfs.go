//go:build linux

// Process identity and liveness from /proc, for processes the agent cannot wait for: those
// it re-adopted after a restart (they were children of the previous agent).
package main

import (
	"bytes"
	"encoding/binary"
	"log"
	"os"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"
)

// procStat returns the state letter and start time (clock ticks since boot) of a process.
func procStat(pid int) (state byte, startTicks uint64, ok bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) is in parentheses and may hold spaces: parse after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return 0, 0, false
	}
	fields := bytes.Fields(b[i+2:])
	if len(fields) < 20 {
		return 0, 0, false
	}
	ticks, err := strconv.ParseUint(string(fields[19]), 10, 64) // field 22 overall
	if err != nil {
		return 0, 0, false
	}
	return fields[0][0], ticks, true
}

func procStartTicks(pid int) (uint64, bool) {
	_, ticks, ok := procStat(pid)
	return ticks, ok
}

// Field 22 of /proc/<pid>/stat is the process's start on the boot-time clock, in clock ticks
// (USER_HZ, 10 ms). Reading the file costs 20-30 µs of CPU per launch (a third of a bare
// spawn), while the kernel stamps the start time during the fork: a fork that began and
// ended within one tick started in that tick. startTicks derives it from the boot-time clock
// read around the fork and reads /proc only when the fork straddled a tick boundary (~1 % of
// launches), when USER_HZ is unknown, or if a check failed: the first launches compare both
// ways, and a mismatch switches to /proc for good.

var userHZ = auxvClockTicks()

// derivedTicksChecks counts down the launches still checked against /proc; -1: derivation off.
var derivedTicksChecks int32 = 3

// bootTimeNs reads CLOCK_BOOTTIME, the clock the kernel stamps process start times with.
func bootTimeNs() int64 {
	var ts syscall.Timespec
	const clockBoottime = 7
	_, _, e := syscall.RawSyscall(syscall.SYS_CLOCK_GETTIME, clockBoottime, uintptr(unsafe.Pointer(&ts)), 0)
	if e != 0 {
		return -1
	}
	return ts.Nano()
}

// startTicks returns the start time of the child pid, forked between the boot-time clock
// readings before and after.
func startTicks(pid int, before, after int64) uint64 {
	checks := atomic.LoadInt32(&derivedTicksChecks)
	if userHZ > 0 && checks >= 0 && before >= 0 && after >= before {
		per := int64(1e9) / int64(userHZ)
		lo, hi := uint64(before/per), uint64(after/per)
		if lo == hi {
			if checks == 0 {
				return lo
			}
			actual, ok := procStartTicks(pid)
			if ok && actual != lo {
				atomic.StoreInt32(&derivedTicksChecks, -1)
				log.Printf("process start times from the boot-time clock disagree with /proc (%d vs %d ticks): reading /proc from now on", lo, actual)
				return actual
			}
			if ok {
				atomic.CompareAndSwapInt32(&derivedTicksChecks, checks, checks-1)
				return actual
			}
		}
	}
	ticks, _ := procStartTicks(pid)
	return ticks
}

// auxvClockTicks returns USER_HZ (AT_CLKTCK from the aux vector), or 0 if unknown.
func auxvClockTicks() uint64 {
	b, err := os.ReadFile("/proc/self/auxv")
	if err != nil {
		return 0
	}
	const atClkTck = 17
	for i := 0; i+16 <= len(b); i += 16 {
		key := binary.LittleEndian.Uint64(b[i:])
		if key == 0 {
			break
		}
		if key == atClkTck {
			return binary.LittleEndian.Uint64(b[i+8:])
		}
	}
	return 0
}

// processAlive says whether pid is still the process that was started at startTicks.
// A zombie counts as dead: its parent (now init) may never reap it.
func processAlive(pid int, startTicks uint64) bool {
	if pid <= 0 {
		return false
	}
	state, ticks, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X' && (startTicks == 0 || ticks == startTicks)
}

// watchOrphans polls re-adopted processes until all have ended. This is the rare path (the
// agent itself was killed); ordinary children are waited for, never polled.
func (a *agent) watchOrphans() {
	tick := time.NewTicker(a.orphanPoll)
	defer tick.Stop()
	for range tick.C {
		a.mu.Lock()
		var gone []*task
		for id, t := range a.orphans {
			if !processAlive(t.rec.Pid, t.rec.StartTicks) {
				gone = append(gone, t)
				delete(a.orphans, id)
			}
		}
		left := len(a.orphans)
		a.mu.Unlock()
		for _, t := range gone {
			a.finish(t, markLost)
		}
		if left == 0 {
			return
		}
	}
}
