//go:build linux

// The task table: launches, waits, kills, acknowledgements and re-adoption after a restart.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const defaultGrace = 10 * time.Second

type agent struct {
	dir        string
	journal    *journal
	devNull    int // fd of /dev/null, the jobs' stdin
	reaper     *reaper
	pathEnv    string // the agent's own PATH, given to jobs whose env has none
	orphanPoll time.Duration
	idleExit   time.Duration // 0: never exit when idle (see idle.go)

	mu      sync.Mutex
	tasks   map[string]*task
	active  *conn            // the connection events go to; the latest one wins
	orphans map[string]*task // re-adopted after a restart: watched through /proc
	idle    idleState

	pathMu    sync.Mutex
	pathCache map[string]pathCacheEntry
	// launchers holds a token per launch in progress (see launch).
	launchers chan struct{}
}

type task struct {
	rec record
	// ending is set once the process has been reaped (or found gone): no more signals.
	ending    bool
	kill      *killOrder
	killTimer *time.Timer
}

type killOrder struct {
	sig   syscall.Signal
	grace time.Duration
}

func newAgent(dir string, orphanPoll, idleExit time.Duration) (*agent, error) {
	devNull, err := syscall.Open(os.DevNull, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return &agent{
		dir:        dir,
		devNull:    devNull,
		reaper:     childReaper(),
		pathEnv:    os.Getenv("PATH"),
		orphanPoll: orphanPoll,
		idleExit:   idleExit,
		tasks:      make(map[string]*task),
		orphans:    make(map[string]*task),
		pathCache:  make(map[string]pathCacheEntry),
		launchers:  make(chan struct{}, maxLaunchers),
	}, nil
}

func (a *agent) taskCount() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.tasks)
}

func nowMs() int64 { return time.Now().UnixMilli() }

func (a *agent) journalPath() string { return filepath.Join(a.dir, "tasks.journal") }

func (a *agent) sockPath() string { return filepath.Join(a.dir, "agent.sock") }

// ---- connections -------------------------------------------------------------------------

// serve accepts clients until the agent exits for being idle (see idle.go), the only
// reason it returns.
func (a *agent) serve(ln *net.UnixListener) {
	a.mu.Lock()
	a.idle.ln = ln
	a.armIdleLocked()
	a.mu.Unlock()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) { // the idle timer woke us
				pending, closed := a.closeIfIdle(ln)
				if closed {
					return
				}
				for _, nc := range pending {
					a.accepted(nc)
				}
				continue
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			log.Printf("accept: %v", err)
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE: do not spin
			continue
		}
		a.accepted(nc)
	}
}

func (a *agent) accepted(nc net.Conn) {
	c := newConn(nc)
	a.mu.Lock()
	a.idle.conns++
	a.cancelIdleLocked()
	old := a.active
	a.active = c
	a.mu.Unlock()
	if old != nil {
		old.send(mustMarshal(event{Type: "superseded", Message: "another client connected to the agent"}))
		old.closeAfterFlush()
	}
	c.send(mustMarshal(event{Type: "hello", Pid: os.Getpid(), Version: protocolVersion}))
	go a.read(c)
}

func (a *agent) read(c *conn) {
	defer func() {
		c.close()
		a.mu.Lock()
		if a.active == c {
			a.active = nil
		}
		a.idle.conns--
		a.armIdleLocked()
		a.mu.Unlock()
	}()
	r := bufio.NewReaderSize(c.nc, 64<<10)
	held := false
	defer func() {
		if held {
			a.journal.release()
		}
	}()
	for {
		line, err := readLine(r, 16<<20)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Printf("connection: %v", err)
			}
			return
		}
		// Requests that arrived together are handled under one journal hold: their records
		// are written, and their events sent, together once the last one is handled.
		if !held {
			a.journal.hold()
			held = true
		}
		if len(line) > 0 {
			var req request
			if decodeRequest(line, &req) {
				a.handle(c, &req)
			} else if err := json.Unmarshal(line, &req); err != nil {
				c.send(mustMarshal(event{Type: "invalid", Message: fmt.Sprintf("request is not JSON: %v", err)}))
			} else {
				a.handle(c, &req)
			}
		}
		if !lineBuffered(r) { // else the next request is already here: handle it first
			a.journal.release()
			held = false
		}
	}
}

// lineBuffered says whether a whole line is buffered (a partial one may wait on the client).
func lineBuffered(r *bufio.Reader) bool {
	n := r.Buffered()
	if n == 0 {
		return false
	}
	b, _ := r.Peek(n)
	return bytes.IndexByte(b, '\n') >= 0
}

// readLine returns the next line without its newline; valid until the next read.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == nil {
		return line[:len(line)-1], nil
	}
	if err != bufio.ErrBufferFull {
		return nil, err
	}
	long := append([]byte(nil), line...)
	for {
		line, err = r.ReadSlice('\n')
		long = append(long, line...)
		if len(long) > max {
			return nil, fmt.Errorf("request longer than %d bytes", max)
		}
		switch err {
		case nil:
			return long[:len(long)-1], nil
		case bufio.ErrBufferFull:
			continue
		default:
			return nil, err
		}
	}
}

func (a *agent) handle(c *conn, req *request) {
	switch req.Type {
	case "launch":
		a.launch(c, req)
	case "env":
		if err := c.defineEnv(req); err != nil {
			c.send(mustMarshal(event{Type: "invalid", Message: err.Error()}))
		}
	case "kill":
		a.killTask(c, req)
	case "ack":
		a.ack(req.TaskID)
	case "list":
		a.mu.Lock()
		recs := make([]record, 0, len(a.tasks))
		for _, t := range a.tasks {
			recs = append(recs, t.rec)
		}
		// Sent under the lock: every event queued after this reply reflects a later state.
		c.send(mustMarshal(event{Type: "list", ID: req.ID, Tasks: &recs}))
		a.mu.Unlock()
	case "ping":
		c.send(mustMarshal(event{Type: "pong", ID: req.ID, Pid: os.Getpid(), Version: protocolVersion}))
	case "bench":
		go a.bench(c, req)
	default:
		c.send(mustMarshal(event{Type: "invalid", ID: req.ID,
			Message: fmt.Sprintf("unknown request type %q (expected launch, kill, ack, list, ping or bench)", req.Type)}))
	}
}

// emitLocked queues an event for the active connection; without one it is dropped, since
// the state it reports is in the task table and the next client asks for it with list.
func (a *agent) emitLocked(ev event) {
	if a.active == nil {
		return
	}
	switch ev.Type {
	case "started", "exited", "error": // the per-task events: encoded by hand
		a.active.send(appendTaskEvent(make([]byte, 0, 128), &ev))
	default:
		a.active.send(mustMarshal(ev))
	}
}

func mustMarshal(ev event) []byte {
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err) // only plain data in events
	}
	return append(b, '\n')
}

// ---- launch ------------------------------------------------------------------------------

func (a *agent) launch(c *conn, req *request) {
	if msg := checkTaskID(req.TaskID); msg != "" {
		a.mu.Lock()
		a.emitLocked(event{Type: "error", TaskID: req.TaskID, Message: msg, Ts: nowMs()})
		a.mu.Unlock()
		return
	}
	a.mu.Lock()
	a.cancelIdleLocked()
	if t, ok := a.tasks[req.TaskID]; ok {
		// A relaunch of a known task (e.g. a core that retried after a restart) reports
		// the task's state instead of running it twice.
		switch {
		case t.rec.terminal():
			a.emitLocked(t.rec.terminalEvent())
		case t.rec.State == stateRunning:
			a.emitLocked(event{Type: "started", TaskID: t.rec.TaskID, Pid: t.rec.Pid, Ts: t.rec.StartedAt})
		}
		a.mu.Unlock()
		return
	}
	t := &task{rec: record{
		TaskID: req.TaskID, State: stateLaunching, Argv: req.Argv, Shell: req.Shell,
		Cwd: req.Cwd, Stdout: req.Stdout, Stderr: req.Stderr, Meta: req.Meta,
	}}
	a.tasks[req.TaskID] = t
	a.mu.Unlock()
	// The environment is built here: the connection's bases belong to its reader.
	env, pathEnv, err := a.prepare(c, req)
	if err != nil {
		a.finish(t, func(r *record) { r.State = stateError; r.Message = err.Error() })
		return
	}
	// Started on a launcher goroutine (at most maxLaunchers at a time; the reader waits for
	// one beyond): the runtime forks concurrently, and a burst of launches started one after
	// another on the reader kept each waiting for the previous ones' mkdir, opens and fork
	// (~2 ms at concurrency 8, while the spawn floor forks from 8 goroutines). The burst's
	// records still go in one journal write: each launcher holds the journal until its
	// record is queued. The exit comes through the reaper.
	a.launchers <- struct{}{}
	a.journal.hold()
	go func() {
		defer func() {
			a.journal.release()
			<-a.launchers
		}()
		a.runTask(t, req, env, pathEnv)
	}()
}

// maxLaunchers bounds the launches in progress at once (each fork holds an OS thread).
const maxLaunchers = 4

// checkTaskID keeps task ids usable as file names.
func checkTaskID(id string) string {
	if id == "" {
		return "launch: taskId is required"
	}
	if len(id) > 200 || id == "." || id == ".." {
		return fmt.Sprintf("launch: taskId %q is not usable (at most 200 characters of A-Z a-z 0-9 . _ -)", id)
	}
	for _, r := range id {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
		if !ok {
			return fmt.Sprintf("launch: taskId %q has character %q (allowed: A-Z a-z 0-9 . _ -)", id, r)
		}
	}
	return ""
}

// runTask starts one job, records it as running (before reporting it started) and hands its
// end to the reaper.
func (a *agent) runTask(t *task, req *request, env []string, pathEnv string) {
	pid, notBefore, notAfter, err := a.start(req, env, pathEnv)
	if err != nil {
		a.finish(t, func(r *record) { r.State = stateError; r.Message = err.Error() })
		return
	}
	ticks := startTicks(pid, notBefore, notAfter)
	now := nowMs()
	a.mu.Lock()
	t.rec.Pid, t.rec.StartTicks, t.rec.StartedAt, t.rec.State = pid, ticks, now, stateRunning
	rec := t.rec
	a.mu.Unlock()
	// Recorded before `started` is reported, so a restarted agent can re-adopt the process.
	a.journal.put(&rec, func() {
		a.mu.Lock()
		a.emitLocked(event{Type: "started", TaskID: rec.TaskID, Pid: rec.Pid, Ts: now})
		a.mu.Unlock()
	})
	a.mu.Lock()
	if t.kill != nil { // asked for while the process was being started
		a.deliverKillLocked(t, t.kill)
	}
	a.mu.Unlock()
	// Registered after the running record was queued: the exited record always follows it.
	a.reaper.watch(pid, func(ws syscall.WaitStatus) {
		a.finish(t, func(r *record) {
			r.State = stateExited
			if ws.Signaled() {
				r.Signal = signalName(ws.Signal())
			} else {
				code := ws.ExitStatus()
				r.ExitCode = &code
			}
		})
	})
}

// start resolves the command against the job's own PATH and starts it in its own process
// group, stdin from /dev/null, stdout/stderr appended to the given files.
// It also returns the boot-time clock read just before and just after the fork: the job
// started in between (see startTicks).
func (a *agent) start(req *request, env []string, pathEnv string) (pid int, notBefore, notAfter int64, err error) {
	argv := launchArgv(req)
	if err := mkdirOne(req.Cwd); err != nil {
		return 0, 0, 0, fmt.Errorf("cannot create working directory: %v", err)
	}

	exe, err := a.resolve(argv[0], pathEnv, req.Cwd)
	if err != nil {
		return 0, 0, 0, err
	}

	stdout, stderr, err := a.openOutputs(req.Stdout, req.Stderr)
	if err != nil {
		return 0, 0, 0, err
	}
	defer func() {
		if stdout != a.devNull {
			syscall.Close(stdout)
		}
		if stderr != a.devNull && stderr != stdout {
			syscall.Close(stderr)
		}
	}()

	notBefore = bootTimeNs()
	pid, err = syscall.ForkExec(exe, argv, &syscall.ProcAttr{
		Dir:   req.Cwd,
		Env:   env,
		Files: []uintptr{uintptr(a.devNull), uintptr(stdout), uintptr(stderr)},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	notAfter = bootTimeNs()
	if err != nil {
		return 0, 0, 0, fmt.Errorf("cannot start %s: %v", argv[0], err)
	}
	return pid, notBefore, notAfter, nil
}

// prepare checks a launch request and builds its environment (on the connection's reader).
func (a *agent) prepare(c *conn, req *request) (env []string, pathEnv string, err error) {
	switch {
	case req.Shell != nil && len(req.Argv) > 0:
		return nil, "", errors.New("launch: give argv or shell, not both")
	case req.Shell == nil && (len(req.Argv) == 0 || req.Argv[0] == ""):
		return nil, "", errors.New("launch: argv (non-empty) or shell is required")
	}
	if req.Cwd == "" || !filepath.IsAbs(req.Cwd) {
		return nil, "", fmt.Errorf("launch: cwd must be an absolute path, got %q", req.Cwd)
	}
	return c.jobEnv(req, a.pathEnv)
}

// launchArgv is the command of a request that prepare accepted.
func launchArgv(req *request) []string {
	if req.Shell != nil {
		return []string{"/bin/sh", "-c", *req.Shell}
	}
	return req.Argv
}

// mkdirOne creates a directory whose parent usually exists (an attempt's directory under its
// run's): one mkdir, and MkdirAll only when a parent is missing.
func mkdirOne(dir string) error {
	err := syscall.Mkdir(dir, 0o755)
	switch err {
	case nil, syscall.EEXIST:
		return nil
	case syscall.ENOENT:
		return os.MkdirAll(dir, 0o755)
	}
	return &os.PathError{Op: "mkdir", Path: dir, Err: err}
}

func (a *agent) openOutputs(stdoutPath, stderrPath string) (stdout, stderr int, err error) {
	open := func(p string) (int, error) {
		if p == "" {
			return a.devNull, nil
		}
		if !filepath.IsAbs(p) {
			return -1, fmt.Errorf("launch: output path must be absolute, got %q", p)
		}
		const flags = syscall.O_WRONLY | syscall.O_APPEND | syscall.O_CREAT | syscall.O_CLOEXEC
		fd, err := syscall.Open(p, flags, 0o644)
		if err == syscall.ENOENT {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return -1, err
			}
			fd, err = syscall.Open(p, flags, 0o644)
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: p, Err: err}
		}
		return fd, nil
	}
	if stdout, err = open(stdoutPath); err != nil {
		return -1, -1, fmt.Errorf("cannot open stdout file: %v", err)
	}
	if stderrPath == stdoutPath {
		return stdout, stdout, nil
	}
	if stderr, err = open(stderrPath); err != nil {
		if stdout != a.devNull {
			syscall.Close(stdout)
		}
		return -1, -1, fmt.Errorf("cannot open stderr file: %v", err)
	}
	return stdout, stderr, nil
}

// resolve is lookPath with a short-lived cache: the PATH walk (a stat per entry) is a
// visible part of a launch, and thousands of launches share a handful of commands.
func (a *agent) resolve(name, pathEnv, cwd string) (string, error) {
	cacheable := !strings.Contains(name, "/")
	for _, dir := range filepath.SplitList(pathEnv) {
		if !filepath.IsAbs(dir) {
			cacheable = false // depends on cwd
		}
	}
	key := name + "\x00" + pathEnv
	now := time.Now()
	if cacheable {
		a.pathMu.Lock()
		e, ok := a.pathCache[key]
		a.pathMu.Unlock()
		if ok && now.Sub(e.at) < pathCacheTTL {
			return e.exe, nil
		}
	}
	exe, err := lookPath(name, pathEnv, cwd)
	if err == nil && cacheable {
		a.pathMu.Lock()
		if len(a.pathCache) >= 1024 {
			a.pathCache = make(map[string]pathCacheEntry)
		}
		a.pathCache[key] = pathCacheEntry{exe: exe, at: now}
		a.pathMu.Unlock()
	}
	return exe, err
}

// pathCacheTTL bounds how long a newly installed command earlier on PATH goes unnoticed.
const pathCacheTTL = 2 * time.Second

type pathCacheEntry struct {
	exe string
	at  time.Time
}

// lookPath finds name like a shell would, but on the job's PATH rather than the agent's.
func lookPath(name, pathEnv, cwd string) (string, error) {
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(cwd, p)
		}
		if err := checkExecutable(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return "", fmt.Errorf("command not found: %s", name)
			}
			return "", fmt.Errorf("cannot run %s: %v", name, err)
		}
		return p, nil
	}
	var denied error
	for _, dir := range filepath.SplitList(pathEnv) {
		if dir == "" {
			dir = cwd
		} else if !filepath.IsAbs(dir) {
			dir = filepath.Join(cwd, dir)
		}
		p := filepath.Join(dir, name)
		err := checkExecutable(p)
		if err == nil {
			return p, nil
		}
		if !errors.Is(err, os.ErrNotExist) && denied == nil {
			denied = err
		}
	}
	if denied != nil {
		return "", fmt.Errorf("cannot run %s: %v", name, denied)
	}
	return "", fmt.Errorf("command not found: %s (searched PATH=%s)", name, pathEnv)
}

func checkExecutable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return fmt.Errorf("%s is a directory", p)
	}
	if fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not executable (permission denied)", p)
	}
	return nil
}

// finish records a terminal state durably, then reports it.
func (a *agent) finish(t *task, fill func(*record)) {
	a.mu.Lock()
	t.ending = true
	if t.killTimer != nil {
		t.killTimer.Stop()
	}
	rec := t.rec
	fill(&rec)
	rec.EndedAt = nowMs()
	rec.Killed = t.kill != nil
	a.mu.Unlock()

	if rec.Killed && rec.Pid > 0 {
		// The group may hold stragglers that ignored the polite signal; a killed task takes
		// its whole group with it.
		_ = syscall.Kill(-rec.Pid, syscall.SIGKILL)
	}
	a.journal.put(&rec, func() {
		a.mu.Lock()
		t.rec = rec
		a.emitLocked(rec.terminalEvent())
		a.mu.Unlock()
	})
}

// ---- kill and ack ------------------------------------------------------------------------

func (a *agent) killTask(c *conn, req *request) {
	sig := syscall.SIGTERM
	if req.Signal != "" {
		s, ok := parseSignal(req.Signal)
		if !ok {
			c.send(mustMarshal(event{Type: "invalid", TaskID: req.TaskID,
				Message: fmt.Sprintf("kill: unknown signal %q (e.g. SIGTERM, SIGKILL, SIGINT)", req.Signal)}))
			return
		}
		sig = s
	}
	order := &killOrder{sig: sig, grace: defaultGrace}
	if req.GraceMs != nil && *req.GraceMs >= 0 {
		order.grace = time.Duration(*req.GraceMs) * time.Millisecond
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tasks[req.TaskID]
	switch {
	case !ok:
		c.send(mustMarshal(event{Type: "unknown", TaskID: req.TaskID, Ts: nowMs()}))
	case t.rec.terminal():
		a.emitLocked(t.rec.terminalEvent())
	case t.ending:
		// Reaped a moment ago; its exited event is on the way.
	case t.rec.State == stateLaunching:
		t.kill = order // delivered by runTask once the pid is known
	default:
		t.kill = order
		a.deliverKillLocked(t, order)
	}
}

// deliverKillLocked signals the task's process group, and escalates to SIGKILL after grace.
func (a *agent) deliverKillLocked(t *task, order *killOrder) {
	pid := t.rec.Pid
	if pid <= 0 {
		return
	}
	_ = syscall.Kill(-pid, order.sig)
	if order.sig == syscall.SIGKILL || t.killTimer != nil {
		return
	}
	t.killTimer = time.AfterFunc(order.grace, func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if !t.ending && !t.rec.terminal() {
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	})
}

// ack forgets a task whose terminal status core has recorded durably.
func (a *agent) ack(taskID string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	t, ok := a.tasks[taskID]
	if !ok || !t.rec.terminal() {
		return // unknown (acknowledged before) or still running: nothing to forget
	}
	delete(a.tasks, taskID)
	a.journal.del(taskID)
	a.armIdleLocked()
}

// ---- bench -------------------------------------------------------------------------------

// bench spawns n copies of argv at the given concurrency, straight from the agent, without
// records or events: the spawn floor that launches through the agent are compared with.
func (a *agent) bench(c *conn, req *request) {
	n, conc := req.N, req.Concurrency
	if n <= 0 {
		n = 1000
	}
	if conc <= 0 {
		conc = 1
	}
	a.mu.Lock()
	a.idle.benches++
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.idle.benches--
		a.armIdleLocked()
		a.mu.Unlock()
	}()
	argv := req.Argv
	if len(argv) == 0 {
		argv = []string{"true"}
	}
	exe, err := lookPath(argv[0], a.pathEnv, "/")
	if err != nil {
		c.send(mustMarshal(event{Type: "invalid", ID: req.ID, Message: err.Error()}))
		return
	}
	jobs := make(chan struct{}, n)
	for i := 0; i < n; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	var failMu sync.Mutex
	failures := 0
	begin := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ended := make(chan struct{}, 1)
			for range jobs {
				// The same start and reaping as a launch, without records, files or events.
				pid, err := syscall.ForkExec(exe, argv, &syscall.ProcAttr{
					Dir: "/", Env: []string{"PATH=" + a.pathEnv},
					Files: []uintptr{uintptr(a.devNull), uintptr(a.devNull), uintptr(a.devNull)},
					Sys:   &syscall.SysProcAttr{Setpgid: true},
				})
				if err == nil {
					a.reaper.watch(pid, func(syscall.WaitStatus) { ended <- struct{}{} })
					<-ended
				}
				if err != nil {
					failMu.Lock()
					failures++
					failMu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	c.send(mustMarshal(event{Type: "bench", ID: req.ID, N: n, Failures: failures,
		ElapsedMs: float64(elapsed.Microseconds()) / 1000}))
}
