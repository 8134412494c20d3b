//go:build linux

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test run the agent itself: the test binary re-executed with
// KAON_AGENT_TEST_MAIN=1 is the agent (flags and all), without a separate build.
func TestMain(m *testing.M) {
	if os.Getenv("KAON_AGENT_TEST_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

type testAgent struct {
	t      *testing.T
	dir    string
	pid    int
	exited chan error
	stderr *bytes.Buffer
}

func startTestAgent(t *testing.T, dir string, args ...string) *testAgent {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--dir", dir}, args...)...)
	cmd.Env = append(os.Environ(), "KAON_AGENT_TEST_MAIN=1")
	stderr := &bytes.Buffer{}
	cmd.Stderr = stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		t.Fatalf("agent's first line %q (%v); stderr:\n%s", line, err, stderr)
	}
	ta := &testAgent{t: t, dir: dir, pid: cmd.Process.Pid, exited: make(chan error, 1), stderr: stderr}
	go func() { ta.exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-ta.exited
	})
	return ta
}

// staysFor fails if the agent exits within d: the idle grace must not run while it owns
// something. (Asserting that nothing happens takes time; d is a few graces.)
func (ta *testAgent) staysFor(d time.Duration, why string) {
	ta.t.Helper()
	select {
	case err := <-ta.exited:
		ta.t.Fatalf("the agent exited (%v) although %s; log:\n%s", err, why, ta.stderr)
	case <-time.After(d):
	}
}

func (ta *testAgent) exitsWithin(d time.Duration) {
	ta.t.Helper()
	select {
	case err := <-ta.exited:
		if err != nil {
			ta.t.Fatalf("the agent exited with %v; log:\n%s", err, ta.stderr)
		}
		ta.exited <- nil // for the cleanup
	case <-time.After(d):
		ta.t.Fatalf("the idle agent did not exit within %v; log:\n%s", d, ta.stderr)
	}
}

type testClient struct {
	t  *testing.T
	nc net.Conn
	sc *bufio.Scanner
}

func dialAgent(t *testing.T, dir string) *testClient {
	t.Helper()
	nc, err := net.Dial("unix", filepath.Join(dir, "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	c := &testClient{t: t, nc: nc, sc: bufio.NewScanner(nc)}
	c.next("hello")
	return c
}

func (c *testClient) send(req map[string]any) {
	c.t.Helper()
	b, _ := json.Marshal(req)
	if _, err := c.nc.Write(append(b, '\n')); err != nil {
		c.t.Fatal(err)
	}
}

// next reads events until one of the given type.
func (c *testClient) next(typ string) event {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for c.sc.Scan() {
		var ev event
		if err := json.Unmarshal(c.sc.Bytes(), &ev); err != nil {
			c.t.Fatal(err)
		}
		if ev.Type == typ {
			return ev
		}
	}
	c.t.Fatalf("no %s event: %v", typ, c.sc.Err())
	return event{}
}

func journalHas(path, taskID, state string) bool {
	b, _ := os.ReadFile(path)
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		var l journalLine
		if json.Unmarshal([]byte(line), &l) == nil && l.Put != nil && l.Put.TaskID == taskID {
			found = l.Put.State == state
		}
	}
	return found
}

func TestIdleExitWaitsForClientsTasksAndAcks(t *testing.T) {
	grace := 200 * time.Millisecond
	dir := t.TempDir()
	ta := startTestAgent(t, dir, "--idle-exit", grace.String())
	work := filepath.Join(dir, "work")

	c := dialAgent(t, dir)
	ta.staysFor(3*grace, "a client is connected")
	c.send(map[string]any{"type": "launch", "taskId": "t1", "cwd": work,
		"shell": "while [ ! -e release ]; do sleep 0.02; done"})
	c.next("started")
	c.nc.Close()
	ta.staysFor(3*grace, "a task runs")

	if err := os.WriteFile(filepath.Join(work, "release"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	journal := filepath.Join(dir, "tasks.journal")
	deadline := time.Now().Add(10 * time.Second)
	for !journalHas(journal, "t1", stateExited) {
		if time.Now().After(deadline) {
			t.Fatalf("t1 did not end; log:\n%s", ta.stderr)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ta.staysFor(3*grace, "t1's end is not acknowledged")

	c = dialAgent(t, dir)
	c.send(map[string]any{"type": "list", "id": 1})
	if ev := c.next("list"); len(*ev.Tasks) != 1 || (*ev.Tasks)[0].State != stateExited {
		t.Fatalf("the agent that stayed lists %+v", *ev.Tasks)
	}
	c.send(map[string]any{"type": "ack", "taskId": "t1"})
	c.nc.Close()
	ta.exitsWithin(10 * time.Second)

	for _, name := range []string{"agent.sock", "agent.sock.closing", "agent.pid", "agent.lock", "tasks.journal"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after the idle exit (%v)", name, err)
		}
	}
	if !strings.Contains(ta.stderr.String(), "owned nothing for 200ms: exited") {
		t.Errorf("no exit line in the log:\n%s", ta.stderr)
	}

	// The next agent starts clean in the same directory.
	next := startTestAgent(t, dir, "--idle-exit", "0")
	c = dialAgent(t, dir)
	c.send(map[string]any{"type": "list", "id": 2})
	if ev := c.next("list"); len(*ev.Tasks) != 0 {
		t.Fatalf("the next agent holds %+v", *ev.Tasks)
	}
	c.nc.Close()
	next.staysFor(3*grace, "--idle-exit 0 disables the idle exit")
}

func TestIdleExitServesAClientThatConnectedAsItClosed(t *testing.T) {
	dir := t.TempDir()
	a, err := newAgent(dir, time.Second, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.loadRecords(); err != nil {
		t.Fatal(err)
	}
	ln, err := listenPrivate(a.sockPath())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a.idle.ln = ln

	// A stale wake-up (the countdown was cancelled after the timer fired) closes nothing.
	if _, closed := a.closeIfIdle(ln); closed {
		t.Fatal("closed without a wake-up from the idle timer")
	}

	// A client whose connect completed (it sits in the backlog, not yet accepted) when the
	// idle timer fires is served, and the socket stays.
	client, err := net.Dial("unix", a.sockPath())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	a.idle.wake = true
	pending, closed := a.closeIfIdle(ln)
	if closed || len(pending) != 1 {
		t.Fatalf("closed=%v with %d pending connections, want the one client served", closed, len(pending))
	}
	defer pending[0].Close()
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1)
	if _, err := pending[0].Read(buf); err != nil || buf[0] != 'x' {
		t.Fatalf("the pending connection does not reach the client: %v", err)
	}
	if _, err := os.Stat(a.sockPath()); err != nil {
		t.Fatalf("the socket is gone although a client was served: %v", err)
	}

	// With an empty backlog it closes, and later clients find no socket (and start an agent).
	a.idle.wake = true
	if _, closed := a.closeIfIdle(ln); !closed {
		t.Fatal("did not close when idle with an empty backlog")
	}
	if _, err := net.Dial("unix", a.sockPath()); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("connecting after the close: %v, want ENOENT", err)
	}
}
