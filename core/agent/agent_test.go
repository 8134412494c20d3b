//go:build linux

package main

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
)

func TestJournalKeepsLiveRecordsAndIgnoresATornTail(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tasks.journal")
	j, recs, err := openJournal(path)
	if err != nil || len(recs) != 0 {
		t.Fatalf("fresh journal: %v %v", recs, err)
	}
	done := make(chan struct{})
	code := 3
	j.put(&record{TaskID: "a", State: stateRunning, Pid: 42}, nil)
	j.put(&record{TaskID: "b", State: stateRunning}, nil)
	j.put(&record{TaskID: "a", State: stateExited, ExitCode: &code}, nil)
	j.del("b")
	j.put(&record{TaskID: "c", State: stateError, Message: "command not found: x"}, func() { close(done) })
	<-done
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"put":{"taskId":"d","sta`) // a write torn by a crash
	f.Close()

	_, recs, err = openJournal(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]record{}
	for _, r := range recs {
		got[r.TaskID] = r
	}
	if len(got) != 2 || got["a"].State != stateExited || *got["a"].ExitCode != 3 || got["c"].State != stateError {
		t.Fatalf("live records after reopen: %+v", got)
	}
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != 2 {
		t.Fatalf("compacted journal has %d lines, want 2:\n%s", n, b)
	}
}

func TestLookPathUsesTheJobsPath(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "tool")
	os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "plain"), []byte(""), 0o644)
	if p, err := lookPath("tool", "/nonexistent:"+dir, "/"); err != nil || p != exe {
		t.Fatalf("tool: %q %v", p, err)
	}
	if _, err := lookPath("tool", "/usr/bin", "/"); err == nil || !strings.HasPrefix(err.Error(), "command not found: tool") {
		t.Fatalf("want command not found, got %v", err)
	}
	if _, err := lookPath("plain", dir, "/"); err == nil || !strings.Contains(err.Error(), "not executable") {
		t.Fatalf("want not executable, got %v", err)
	}
	if p, err := lookPath("./tool", "", dir); err != nil || p != exe {
		t.Fatalf("relative: %q %v", p, err)
	}
}

func TestCheckTaskID(t *testing.T) {
	for _, ok := range []string{"r1.train.1", "a_b-c"} {
		if msg := checkTaskID(ok); msg != "" {
			t.Errorf("%q rejected: %s", ok, msg)
		}
	}
	for _, bad := range []string{"", "..", "a/b", "a b", strings.Repeat("x", 201)} {
		if checkTaskID(bad) == "" {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestProcStatIdentifiesThisProcess(t *testing.T) {
	ticks, ok := procStartTicks(os.Getpid())
	if !ok || ticks == 0 {
		t.Fatal("no start time for our own pid")
	}
	if !processAlive(os.Getpid(), ticks) || processAlive(os.Getpid(), ticks+1) {
		t.Fatal("start time does not identify the process")
	}
}

func TestListenPrivateCreatesTheSocketOwnerOnlyWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := listenPrivate(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket created with mode %o (%v), want 600: other users could connect", fi.Mode().Perm(), err)
	}
}

func TestStartTicksFromTheBootClockMatchProc(t *testing.T) {
	if userHZ == 0 {
		t.Skip("AT_CLKTCK not in the aux vector")
	}
	r := childReaper()
	devNull, _ := syscall.Open(os.DevNull, syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	defer syscall.Close(devNull)
	per := int64(1e9) / int64(userHZ)
	compared := 0
	for i := 0; i < 40; i++ {
		before := bootTimeNs()
		pid, err := syscall.ForkExec("/bin/sleep", []string{"sleep", "0.2"}, &syscall.ProcAttr{
			Files: []uintptr{uintptr(devNull), uintptr(devNull), uintptr(devNull)},
		})
		after := bootTimeNs()
		if err != nil {
			t.Fatal(err)
		}
		actual, ok := procStartTicks(pid)
		if !ok {
			t.Fatalf("no /proc/%d/stat", pid)
		}
		if got := startTicks(pid, before, after); got != actual {
			t.Fatalf("startTicks = %d, /proc says %d", got, actual)
		}
		if before/per == after/per {
			compared++
			if uint64(before/per) != actual {
				t.Fatalf("derived %d ticks, /proc says %d", before/per, actual)
			}
		}
		ended := make(chan struct{})
		r.watch(pid, func(syscall.WaitStatus) { close(ended) })
		syscall.Kill(pid, syscall.SIGKILL)
		<-ended
	}
	if compared < 20 {
		t.Fatalf("only %d of 40 forks stayed within one tick", compared)
	}
	if atomic.LoadInt32(&derivedTicksChecks) != 0 {
		t.Fatalf("the checks of the first launches did not pass: %d", derivedTicksChecks)
	}
}

func TestJobEnvAppliesTheBaseAndItsOwnVariables(t *testing.T) {
	c := &conn{}
	id := 3
	if err := c.defineEnv(&request{EnvID: &id, Env: map[string]string{"A": "1", "B": "2", "PATH": "/base"}}); err != nil {
		t.Fatal(err)
	}
	env, pathEnv, err := c.jobEnv(&request{EnvID: &id, Env: map[string]string{"B": "3", "C": "4"}}, "/agent")
	if err != nil || pathEnv != "/base" {
		t.Fatalf("%v %q", err, pathEnv)
	}
	sort.Strings(env)
	if strings.Join(env, " ") != "A=1 B=3 C=4 PATH=/base" {
		t.Fatalf("env: %v", env)
	}
	env, pathEnv, _ = c.jobEnv(&request{Env: map[string]string{"X": "1"}}, "/agent")
	if pathEnv != "/agent" || len(env) != 2 {
		t.Fatalf("without a base: %v %q", env, pathEnv)
	}
	other := 4
	if _, _, err := c.jobEnv(&request{EnvID: &other}, "/agent"); err == nil || !strings.Contains(err.Error(), "envId 4 is not defined") {
		t.Fatalf("undefined base: %v", err)
	}
	if _, _, err := c.jobEnv(&request{EnvID: &id, Env: map[string]string{"BAD=": "x"}}, "/agent"); err == nil {
		t.Fatal("a bad variable name was accepted")
	}
	big := maxEnvBases
	if err := c.defineEnv(&request{EnvID: &big}); err == nil {
		t.Fatal("an envId out of range was accepted")
	}
}
