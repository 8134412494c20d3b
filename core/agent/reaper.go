//go:build linux

// Reaping children: one goroutine woken by SIGCHLD collects every exited child with
// wait4(-1, WNOHANG) and hands each status to whoever registered its pid.
//
// Why not a goroutine blocked in Wait per child: a blocking wait holds an OS thread per
// running job (a thousand running jobs, a thousand threads), every exit wakes one of them,
// and the runtime's monitor keeps retaking processors from the blocked threads. One reaper
// costs a signal per burst of exits instead. Every child of the agent must be reaped here
// (os.Process.Wait would race with wait4(-1)): the agent starts processes with
// syscall.ForkExec only.
package main

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

type reaper struct {
	mu      sync.Mutex
	waiting map[int]func(syscall.WaitStatus)
	// early holds statuses of children that ended before their pid was registered (a job
	// that exits at once can be reaped before ForkExec's caller gets to watch it).
	early map[int]earlyExit
}

type earlyExit struct {
	ws syscall.WaitStatus
	at time.Time
}

var (
	reaperOnce sync.Once
	theReaper  *reaper
)

// childReaper returns the process's one reaper (two would steal each other's children).
func childReaper() *reaper {
	reaperOnce.Do(func() { theReaper = newReaper() })
	return theReaper
}

func newReaper() *reaper {
	r := &reaper{waiting: make(map[int]func(syscall.WaitStatus)), early: make(map[int]earlyExit)}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		for range sigs {
			r.reap()
		}
	}()
	return r
}

// watch calls done (on the reaper's goroutine, or at once) when the child pid has ended.
func (r *reaper) watch(pid int, done func(syscall.WaitStatus)) {
	r.mu.Lock()
	if e, ok := r.early[pid]; ok {
		delete(r.early, pid)
		r.mu.Unlock()
		done(e.ws)
		return
	}
	r.waiting[pid] = done
	r.mu.Unlock()
}

// reap collects every child that has ended (signals coalesce, so it loops until none is
// left), then reports them together: their records and events can leave in one write.
func (r *reaper) reap() {
	type ended struct {
		done func(syscall.WaitStatus)
		ws   syscall.WaitStatus
	}
	var batch []ended
	defer func() {
		for _, e := range batch {
			e.done(e.ws)
		}
	}()
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil || pid <= 0 {
			return
		}
		r.mu.Lock()
		done, ok := r.waiting[pid]
		if ok {
			delete(r.waiting, pid)
		} else {
			now := time.Now()
			// A child nobody watches for long is one whose start failed after the fork
			// (ForkExec reaps those itself, and may lose the race to us): forget it.
			if len(r.early) > 64 {
				for p, e := range r.early {
					if now.Sub(e.at) > time.Minute {
						delete(r.early, p)
					}
				}
			}
			r.early[pid] = earlyExit{ws: ws, at: now}
		}
		r.mu.Unlock()
		if ok {
			batch = append(batch, ended{done, ws})
		}
	}
}
