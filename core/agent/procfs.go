//go:build linux

// Process identity and liveness from /proc, for processes the agent cannot wait for: those
// it re-adopted after a restart (they were children of the previous agent).
package main

import (
	"bytes"
	"os"
	"strconv"
	"time"
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
