//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"math/rand"
	"reflect"
	"strings"
	"testing"
)

// The fast decoder must decode exactly like encoding/json, or decline.
func checkDecodes(t *testing.T, line string) (fast bool) {
	t.Helper()
	var want request
	wantErr := json.Unmarshal([]byte(line), &want)
	var got request
	if !decodeRequest([]byte(line), &got) {
		return false
	}
	if wantErr != nil {
		t.Fatalf("%s: decoded, but encoding/json says %v", line, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %+v\nwant %+v", line, got, want)
	}
	return true
}

func TestFastDecoderMatchesEncodingJSON(t *testing.T) {
	if !checkDecodes(t, string(launchLine)) {
		t.Fatal("the usual launch was not decoded by the fast path")
	}
	fastOnes := []string{
		`{"type":"launch","taskId":"a","argv":[],"env":{},"envId":0,"cwd":"/x","meta":{"a":[1,2,{"b":"c\"d"}]}}`,
		` { "type" : "kill" , "taskId":"t", "signal":"SIGKILL", "graceMs": 0 } `,
		`{"type":"list","id":17}`,
		`{"type":"bench","id":3,"n":2000,"concurrency":8,"argv":["true"]}`,
		`{"type":"launch","shell":"echo hï","env":{"K":"ü"},"envId":63}`,
		`{"type":"ack","taskId":"x","taskId":"y"}`,
		`{"type":"launch","meta":null,"id":null}`,
		`{"type":"launch","graceMs":-5}`,
		`{}`,
	}
	for _, l := range fastOnes {
		if !checkDecodes(t, l) {
			t.Fatalf("not decoded by the fast path: %s", l)
		}
	}
	declined := []string{
		`{"type":"launch","env":{"K":"with \"quotes\""}}`, // escapes: encoding/json's job
		`{"Type":"launch"}`, // case-insensitive match
		`{"type":"launch","shell":null}`,
		`{"type":"launch","extra":1}`,
		`{"type":"launch","envId":1.5}`,
		`{"type":"launch","envId":01}`,
		`{"type":"launch","envId":99999999999999999999}`,
		`{"type":"launch","taskId":"bad \xff"}`,
		`{"type":"launch","meta":{"a":}}`,
		`{"type":"launch","meta":{1:2}}`,
		`{"type":"launch"} trailing`,
		`{"type":"launch",}`,
		`{"type":"launch"`,
		`[1]`, ``, `nul`,
		`{"type":"launch","argv":["a",]}`,
		`{"type":"launch","env":{"a":1}}`,
	}
	for _, l := range declined {
		checkDecodes(t, l) // may decline; must never differ
	}
	// Random requests as core writes them, and random damage to them.
	rng := rand.New(rand.NewSource(7))
	alphabet := []string{"a", "Z", "0", "/", ".", " ", "ü", "\"", "\\", "\n", "\x01", "\xff", "€", "{", "}", ":", ","}
	word := func() string {
		s := ""
		for n := rng.Intn(8); n > 0; n-- {
			s += alphabet[rng.Intn(len(alphabet))]
		}
		return s
	}
	for i := 0; i < 3000; i++ {
		req := map[string]interface{}{"type": "launch", "taskId": word(), "cwd": word()}
		if rng.Intn(2) == 0 {
			req["argv"] = []string{word(), word()}
		} else {
			req["shell"] = word()
		}
		env := map[string]string{}
		for n := rng.Intn(5); n > 0; n-- {
			env[word()] = word()
		}
		req["env"] = env
		req["envId"] = rng.Intn(70) - 3
		req["meta"] = map[string]interface{}{"resources": map[string]float64{"cpus": rng.Float64()}, "name": word()}
		b, _ := json.Marshal(req)
		checkDecodes(t, string(b))
		if len(b) > 2 {
			damaged := append([]byte(nil), b...)
			damaged[rng.Intn(len(damaged))] = "\"{}[],:x\\ 1"[rng.Intn(11)]
			checkDecodes(t, string(damaged))
		}
	}
}

var launchLine = []byte(`{"type":"launch","taskId":"01jd5x8k2m3n4p5q6r7s8t9v0w.fe.i1234.t.1","argv":["true"],"envId":0,"env":{"KAON_PATH":"fe[1234]/t","KAON_OUTPUT":"/tmp/kaon-eng-abcdef/runs/01jd5x8k2m3n4p5q6r7s8t9v0w/fe.i1234.t.1/output","KAON_TOKEN":"kst1.eyJyIjoiMDFqZDV4OGsybTNuNHA1cTZyN3M4dDl2MHciLCJwIjoiZmVbMTIzNF0vdCIsImEiOjF9.xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"},"cwd":"/tmp/kaon-eng-abcdef/runs/01jd5x8k2m3n4p5q6r7s8t9v0w/fe.i1234.t.1","stdout":"/tmp/kaon-eng-abcdef/runs/01jd5x8k2m3n4p5q6r7s8t9v0w/fe.i1234.t.1/stdout","stderr":"/tmp/kaon-eng-abcdef/runs/01jd5x8k2m3n4p5q6r7s8t9v0w/fe.i1234.t.1/stderr","meta":{"resources":{"cpus":0.1,"memMb":16,"gpus":0,"diskMb":0},"name":"fanout/fe[1234]/t#1"}}`)

func BenchmarkDecodeLaunch(b *testing.B) {
	b.Run("encoding/json", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var req request
			if err := json.Unmarshal(launchLine, &req); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fast", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			var req request
			if !decodeRequest(launchLine, &req) {
				b.Fatal("declined")
			}
		}
	})
}

func TestReadLineJoinsLinesLongerThanTheBuffer(t *testing.T) {
	long := strings.Repeat("x", 100)
	r := bufio.NewReaderSize(strings.NewReader("a\n"+long+"\nb\n"+long+long), 16)
	for _, want := range []string{"a", long, "b"} {
		got, err := readLine(r, 1000)
		if err != nil || string(got) != want {
			t.Fatalf("got %q %v, want %q", got, err, want)
		}
	}
	if _, err := readLine(r, 150); err == nil || !strings.Contains(err.Error(), "longer than 150") {
		t.Fatalf("an over-long line: %v", err)
	}
}
