//go:build linux

// Exiting when idle. The agent outlives core on purpose (it owns running jobs across core
// restarts), but once it owns nothing — no client connected, no task running, no terminal
// status waiting for its ack — it is only a leftover process. After a grace period of that
// (--idle-exit, default 30s) it removes its socket, pid and lock files and its empty journal,
// and exits; the next core that needs an agent starts a new one.
//
// Race-free against a client that connects just then: only the accept loop decides to exit,
// the idle timer merely wakes it (a listener deadline). Under the agent's lock it renames the
// socket away (from then on a connect fails with ENOENT, and the client starts a new agent,
// which gets this one's flock once it is gone), then accepts without blocking whatever already
// sits in the listen backlog: a client whose connect succeeded. If there is one, the socket is
// renamed back and the client served, as if the countdown had never ended. Only with the
// socket gone and the backlog empty does it close the listener.
package main

import (
	"log"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// idleState is guarded by agent.mu.
type idleState struct {
	ln      *net.UnixListener
	conns   int // open client connections (the active one and superseded ones still closing)
	benches int
	timer   *time.Timer
	gen     int  // bumped by every cancel: a timer that fired late sees it moved and does nothing
	wake    bool // the timer expired and set the listener's deadline to wake the accept loop
}

// ownsNothingLocked: no client, no task in the table (running, or ended and not yet acked).
func (a *agent) ownsNothingLocked() bool {
	return a.idle.conns == 0 && a.idle.benches == 0 && len(a.tasks) == 0
}

// armIdleLocked starts the countdown if the agent owns nothing and none is running.
func (a *agent) armIdleLocked() {
	if a.idleExit <= 0 || a.idle.ln == nil || a.idle.timer != nil || !a.ownsNothingLocked() {
		return
	}
	gen := a.idle.gen
	a.idle.timer = time.AfterFunc(a.idleExit, func() { a.idleExpired(gen) })
}

// cancelIdleLocked stops the countdown: a connection or a launch.
func (a *agent) cancelIdleLocked() {
	a.idle.gen++
	a.idle.wake = false
	if a.idle.timer != nil {
		a.idle.timer.Stop()
		a.idle.timer = nil
	}
}

func (a *agent) idleExpired(gen int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if gen != a.idle.gen {
		return // cancelled after the timer fired
	}
	a.idle.timer = nil
	if !a.ownsNothingLocked() {
		return
	}
	a.idle.wake = true
	_ = a.idle.ln.SetDeadline(time.Now()) // Accept returns os.ErrDeadlineExceeded
}

// closeIfIdle runs in the accept loop when its deadline passed. It returns closed when the
// listener is closed and the socket removed (the agent then exits), or the clients found in
// the backlog while closing (then the agent goes on serving).
func (a *agent) closeIfIdle(ln *net.UnixListener) (pending []net.Conn, closed bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	_ = ln.SetDeadline(time.Time{})
	if !a.idle.wake || !a.ownsNothingLocked() {
		a.idle.wake = false
		a.armIdleLocked()
		return nil, false // a stale wake-up: something happened since the timer fired
	}
	a.idle.wake = false

	sock := a.sockPath()
	aside := sock + ".closing"
	moved := os.Rename(sock, aside) == nil
	if pending = acceptPending(ln); len(pending) > 0 {
		if moved {
			_ = os.Rename(aside, sock)
		}
		log.Printf("a client connected as the idle agent was exiting: staying")
		return pending, false
	}
	_ = ln.Close()
	if moved {
		_ = os.Remove(aside)
	} else {
		_ = os.Remove(sock)
	}
	return nil, true
}

// acceptPending accepts, without blocking, the connections already in the listen backlog.
// It goes around net's poller (which refuses to accept past the deadline that woke us).
func acceptPending(ln *net.UnixListener) []net.Conn {
	raw, err := ln.SyscallConn()
	if err != nil {
		return nil
	}
	var fds []int
	_ = raw.Control(func(fd uintptr) {
		for {
			// The listener is non-blocking (net sets it so): EAGAIN means an empty backlog.
			nfd, _, err := syscall.Accept4(int(fd), syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
			if err == syscall.EINTR || err == syscall.ECONNABORTED {
				continue
			}
			if err != nil {
				return
			}
			fds = append(fds, nfd)
		}
	})
	conns := make([]net.Conn, 0, len(fds))
	for _, fd := range fds {
		f := os.NewFile(uintptr(fd), "agent-client")
		nc, err := net.FileConn(f) // dups the descriptor
		f.Close()
		if err != nil {
			log.Printf("cannot take over a pending connection: %v", err)
			continue
		}
		conns = append(conns, nc)
	}
	return conns
}

// removeOwnFiles removes the pid and lock files. Called with the flock still held, just
// before exiting: a new agent locks only a lock file that is still at its path (acquireLock
// checks), so removing the held one cannot let two agents in.
func removeOwnFiles(dir string) {
	_ = os.Remove(filepath.Join(dir, "agent.pid"))
	_ = os.Remove(filepath.Join(dir, "agent.lock"))
}

// closeJournal flushes the journal and removes it when it holds no record, so that the
// next agent starts clean.
func (a *agent) closeJournal() {
	removed, err := a.journal.close()
	switch {
	case err != nil:
		log.Printf("closing the task journal: %v", err)
	case !removed:
		log.Printf("the task journal still holds records; kept for the next agent")
	}
}
