//go:build linux

// kaon-agent launches and owns the processes of kaon's local backend.
//
// Core (Node.js) must not spawn jobs itself: Node forks to spawn, and the fork blocks the
// event loop for a time that grows with the heap (about 2 ms at 50 MB, 40 ms at 600 MB),
// while core holds thousands of runs. Go's os.StartProcess uses clone(CLONE_VFORK|CLONE_VM),
// whose cost does not depend on the parent's memory, so this small long-lived process
// launches jobs for core and owns them across core restarts: it waits for them, records
// their terminal status durably, and reports it to whichever core connects next.
//
// One agent per directory (a flock on agent.lock); it listens on <dir>/agent.sock and speaks
// newline-delimited JSON (the protocol is documented in
// core/src/backends/local/agent-client.ts). Once it owns nothing (no client, no running task,
// no unacknowledged status) for --idle-exit, it cleans up and exits (idle.go). Standard
// library only.
package main

import (
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxSocketPath is the room in sockaddr_un.sun_path, less the terminating NUL.
const maxSocketPath = 107

func main() {
	dir := flag.String("dir", "", "directory the agent owns: socket, lock, task records (usually <data-dir>/agent)")
	orphanPoll := flag.Duration("orphan-poll", 500*time.Millisecond,
		"how often to check processes re-adopted after an agent restart (they cannot be waited for)")
	idleExit := flag.Duration("idle-exit", 30*time.Second,
		"exit after owning nothing (no client, no running task, no unacknowledged status) this long; 0: never")
	flag.Parse()
	if *idleExit < 0 {
		fmt.Fprintf(os.Stderr, "kaon-agent: --idle-exit must be a duration >= 0 (e.g. 30s, or 0 to never exit), got %v\n", *idleExit)
		os.Exit(2)
	}
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "kaon-agent: --dir is required (usually <data-dir>/agent)")
		os.Exit(2)
	}
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	log.SetPrefix(fmt.Sprintf("kaon-agent[%d]: ", os.Getpid()))
	os.Exit(run(*dir, *orphanPoll, *idleExit))
}

func run(dir string, orphanPoll, idleExit time.Duration) int {
	dir, err := filepath.Abs(dir)
	if err != nil {
		log.Printf("--dir %q: %v", dir, err)
		return 2
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Printf("cannot create the agent directory: %v", err)
		return 1
	}
	sockPath := filepath.Join(dir, "agent.sock")
	if len(sockPath) > maxSocketPath {
		log.Printf("socket path %q is %d bytes, more than the %d a Unix socket allows: use a shorter data directory",
			sockPath, len(sockPath), maxSocketPath)
		return 2
	}

	lock, err := acquireLock(dir)
	if errors.Is(err, errLocked) {
		// Another agent owns this directory: tell the starter which one and leave.
		fmt.Printf("running %d\n", readPid(dir))
		return 0
	}
	if err != nil {
		log.Printf("cannot lock %s: %v", dir, err)
		return 1
	}
	defer lock.Close()

	a, err := newAgent(dir, orphanPoll, idleExit)
	if err != nil {
		log.Print(err)
		return 1
	}
	if err := a.loadRecords(); err != nil {
		log.Printf("cannot read task records: %v", err)
		return 1
	}

	_ = os.Remove(sockPath) // stale: we hold the lock, so nobody listens on it
	_ = os.Remove(sockPath + ".closing")
	ln, err := listenPrivate(sockPath)
	if err != nil {
		log.Printf("cannot listen on %s: %v", sockPath, err)
		return 1
	}

	sigs := make(chan os.Signal, 4)
	// SIGPIPE is caught (not ignored, which jobs would inherit) so that writing to a closed
	// stdout yields EPIPE instead of killing the agent. SIGHUP is caught and ignored.
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGPIPE)
	go func() {
		for s := range sigs {
			if s == syscall.SIGTERM || s == syscall.SIGINT {
				log.Printf("%v: exiting; running jobs keep running and are re-adopted by the next agent", s)
				_ = os.Remove(sockPath)
				removeOwnFiles(dir)
				os.Exit(0)
			}
		}
	}()

	log.Printf("listening on %s (%d task records, idle exit after %v)", sockPath, a.taskCount(), idleExit)
	// The starter waits for this line (a pipe), then the agent lets go of it for good.
	fmt.Printf("ready %d\n", os.Getpid())
	detachStdout()

	a.serve(ln) // returns once idle and closed (idle.go)
	signal.Stop(sigs)
	a.closeJournal()
	removeOwnFiles(dir)
	log.Printf("owned nothing for %v: exited", idleExit)
	return 0
}

// listenPrivate listens on a Unix socket that only this user can connect to from the moment
// it exists (mode 0600): whoever connects can run any command as this user. A chmod after
// Listen would leave a window in which the socket has the umask's, possibly open, mode.
func listenPrivate(sockPath string) (*net.UnixListener, error) {
	old := syscall.Umask(0o177)
	defer syscall.Umask(old)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sockPath, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The agent removes its socket itself, when it still owns the path (idle.go).
	ln.SetUnlinkOnClose(false)
	return ln, nil
}

var errLocked = errors.New("locked by another agent")

func acquireLock(dir string) (*os.File, error) {
	path := filepath.Join(dir, "agent.lock")
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, errLocked
			}
			return nil, err
		}
		// An agent that exits idle removes agent.lock while holding it: a lock on a file no
		// longer at the path protects nothing (a third agent would lock the new file), so
		// take the lock again on the file that is there now.
		var held, current syscall.Stat_t
		if err := syscall.Fstat(int(f.Fd()), &held); err != nil {
			f.Close()
			return nil, err
		}
		err = syscall.Stat(path, &current)
		if err == nil && held.Dev == current.Dev && held.Ino == current.Ino {
			if err := writeFileAtomic(filepath.Join(dir, "agent.pid"), []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
				f.Close()
				return nil, err
			}
			return f, nil
		}
		f.Close()
		if err != nil && !errors.Is(err, syscall.ENOENT) {
			return nil, err
		}
	}
}

func readPid(dir string) int {
	b, err := os.ReadFile(filepath.Join(dir, "agent.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// detachStdout points fd 1 at /dev/null so the agent never writes to (or is killed by) the
// starter's pipe after the ready line, and no later open() reuses fd 1 by accident.
func detachStdout() {
	devNull, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		return
	}
	_ = syscall.Dup3(int(devNull.Fd()), 1, 0)
	devNull.Close()
}
