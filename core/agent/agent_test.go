//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
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
