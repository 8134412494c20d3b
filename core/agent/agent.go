//go:build linux

// The task table: launches, waits, kills, acknowledgements and re-adoption after a restart.
package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
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
	devNull    *os.File
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
}

type task struct {
	rec  record
	proc *os.Process // nil until started, and for orphans
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
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	return &agent{
		dir:        dir,
		devNull:    devNull,
		pathEnv:    os.Getenv("PATH"),
		orphanPoll: orphanPoll,
		idleExit:   idleExit,
		tasks:      make(map[string]*task),
		orphans:    make(map[string]*task),
		pathCache:  make(map[string]pathCacheEntry),
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
	sc := bufio.NewScanner(c.nc)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var req request
		if err := json.Unmarshal(line, &req); err != nil {
			c.send(mustMarshal(event{Type: "invalid", Message: fmt.Sprintf("request is not JSON: %v", err)}))
			continue
		}
		a.handle(c, &req)
	}
	if err := sc.Err(); err != nil && !errors.Is(err, net.ErrClosed) {
		log.Printf("connection: %v", err)
	}
}

func (a *agent) handle(c *conn, req *request) {
	switch req.Type {
	case "launch":
		a.launch(req)
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
	if a.active != nil {
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

func (a *agent) launch(req *request) {
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
	go a.runTask(t, req)
}

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

// runTask starts one job and waits for it: the one goroutine per child.
func (a *agent) runTask(t *task, req *request) {
	proc, err := a.start(req)
	if err != nil {
		a.finish(t, func(r *record) { r.State = stateError; r.Message = err.Error() })
		return
	}
	ticks, _ := procStartTicks(proc.Pid)
	now := nowMs()
	a.mu.Lock()
	t.proc = proc
	t.rec.Pid, t.rec.StartTicks, t.rec.StartedAt, t.rec.State = proc.Pid, ticks, now, stateRunning
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

	state, err := proc.Wait()
	if err != nil {
		a.finish(t, func(r *record) { r.State = stateExited; r.Lost = true; r.Message = "wait: " + err.Error() })
		return
	}
	ws, _ := state.Sys().(syscall.WaitStatus)
	a.finish(t, func(r *record) {
		r.State = stateExited
		if ws.Signaled() {
			r.Signal = signalName(ws.Signal())
		} else {
			code := ws.ExitStatus()
			r.ExitCode = &code
		}
	})
}

// start resolves the command against the job's own PATH and starts it in its own process
// group, stdin from /dev/null, stdout/stderr appended to the given files.
func (a *agent) start(req *request) (*os.Process, error) {
	var argv []string
	switch {
	case req.Shell != nil && len(req.Argv) > 0:
		return nil, errors.New("launch: give argv or shell, not both")
	case req.Shell != nil:
		argv = []string{"/bin/sh", "-c", *req.Shell}
	case len(req.Argv) > 0 && req.Argv[0] != "":
		argv = req.Argv
	default:
		return nil, errors.New("launch: argv (non-empty) or shell is required")
	}
	if req.Cwd == "" || !filepath.IsAbs(req.Cwd) {
		return nil, fmt.Errorf("launch: cwd must be an absolute path, got %q", req.Cwd)
	}
	if err := os.MkdirAll(req.Cwd, 0o755); err != nil {
		return nil, fmt.Errorf("cannot create working directory: %v", err)
	}

	env := make([]string, 0, len(req.Env)+1)
	pathEnv, hasPath := req.Env["PATH"]
	for k, v := range req.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("launch: environment variable %q is not valid", k)
		}
		env = append(env, k+"="+v)
	}
	if !hasPath {
		pathEnv = a.pathEnv
		env = append(env, "PATH="+pathEnv)
	}

	exe, err := a.resolve(argv[0], pathEnv, req.Cwd)
	if err != nil {
		return nil, err
	}

	stdout, stderr, err := a.openOutputs(req.Stdout, req.Stderr)
	if err != nil {
		return nil, err
	}
	defer func() {
		if stdout != a.devNull {
			stdout.Close()
		}
		if stderr != a.devNull && stderr != stdout {
			stderr.Close()
		}
	}()

	proc, err := os.StartProcess(exe, argv, &os.ProcAttr{
		Dir:   req.Cwd,
		Env:   env,
		Files: []*os.File{a.devNull, stdout, stderr},
		Sys:   &syscall.SysProcAttr{Setpgid: true},
	})
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("cannot start %s: %v", argv[0], err)
	}
	return proc, nil
}

func (a *agent) openOutputs(stdoutPath, stderrPath string) (stdout, stderr *os.File, err error) {
	open := func(p string) (*os.File, error) {
		if p == "" {
			return a.devNull, nil
		}
		if !filepath.IsAbs(p) {
			return nil, fmt.Errorf("launch: output path must be absolute, got %q", p)
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if errors.Is(err, os.ErrNotExist) {
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				return nil, err
			}
			f, err = os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		}
		return f, err
	}
	if stdout, err = open(stdoutPath); err != nil {
		return nil, nil, fmt.Errorf("cannot open stdout file: %v", err)
	}
	if stderrPath == stdoutPath {
		return stdout, stdout, nil
	}
	if stderr, err = open(stderrPath); err != nil {
		if stdout != a.devNull {
			stdout.Close()
		}
		return nil, nil, fmt.Errorf("cannot open stderr file: %v", err)
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
		t.proc = nil
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
			for range jobs {
				p, err := os.StartProcess(exe, argv, &os.ProcAttr{
					Dir: "/", Env: []string{"PATH=" + a.pathEnv},
					Files: []*os.File{a.devNull, a.devNull, a.devNull},
					Sys:   &syscall.SysProcAttr{Setpgid: true},
				})
				if err == nil {
					_, err = p.Wait()
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
