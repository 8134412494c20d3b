//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"reflect"
	"testing"
)

// encoding/json without HTML escaping: what the hand-written encoders must match.
func marshalPlain(t *testing.T, v interface{}) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatal(err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func TestAppendJSONStringMatchesEncodingJSON(t *testing.T) {
	cases := []string{"", "plain", `quo"te back\slash`, "tab\tnl\ncr\r", "\x00\x01\x1f\x7f",
		"ünï €", "\u2028\u2029", "bad \xff\xfe utf8", "half \xe2\x82", "<&>", "emoji 🎉"}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 2000; i++ {
		b := make([]byte, rng.Intn(24))
		rng.Read(b)
		cases = append(cases, string(b))
	}
	for _, s := range cases {
		got := appendJSONString(nil, s)
		want := marshalPlain(t, s)
		// The same string once decoded (Go versions differ in which escapes they use).
		var g, w string
		if err := json.Unmarshal(got, &g); err != nil {
			t.Fatalf("%q: %s is not JSON: %v", s, got, err)
		}
		json.Unmarshal(want, &w)
		if g != w {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
	}
}

func TestRecordAndEventEncodingRoundTrips(t *testing.T) {
	code, zero := 3, 0
	shell := "echo \"hi\"\n"
	recs := []record{
		{TaskID: "r1.a.1", State: stateLaunching},
		{TaskID: "r1.fe.i3.t.1", State: stateRunning, Argv: []string{"python", "x y.py", "ü"},
			Cwd: "/d/runs/r1/fe.i3.t.1", Stdout: "/d/o", Stderr: "/d/e",
			Meta: json.RawMessage(`{"resources":{"cpus":0.5},"name":"wf/fe[3]/t#1"}`),
			Pid:  4242, StartTicks: 123456789, StartedAt: 1763786400000},
		{TaskID: "x", State: stateExited, Shell: &shell, ExitCode: &code, EndedAt: 17, Killed: true,
			Signal: "SIGTERM", Lost: true, Message: "the \"agent\" restarted"},
		{TaskID: "y", State: stateExited, ExitCode: &zero},
		{TaskID: "z", State: stateError, Message: "command not found: foo (searched PATH=/bin)"},
	}
	for _, r := range recs {
		got := r.appendJSON(nil)
		if want := marshalPlain(t, &r); !bytes.Equal(got, want) {
			t.Fatalf("record:\n got %s\nwant %s", got, want)
		}
		var back record
		if err := json.Unmarshal(got, &back); err != nil || !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip: %+v (%v), want %+v", back, err, r)
		}
		ev := r.terminalEvent()
		if r.State == stateRunning {
			ev = event{Type: "started", TaskID: r.TaskID, Pid: r.Pid, Ts: r.StartedAt}
		}
		if got, want := appendTaskEvent(nil, &ev), mustMarshal(ev); !bytes.Equal(got, want) {
			t.Fatalf("event:\n got %s\nwant %s", got, want)
		}
	}
}
