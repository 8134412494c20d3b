//go:build linux

// A reflection-free decoder for the requests as core writes them. encoding/json spent ~15 %
// of the agent's CPU per task decoding launches; this handles the plain shapes (known fields;
// strings without escapes; integers) and says no to anything else, which then goes through
// encoding/json — so it never decodes a request differently, only faster.
package main

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

type fastDecoder struct {
	b []byte
	i int
}

// decodeRequest fills req from one request line and reports whether it could; when it
// could not, req must be decoded with encoding/json instead.
func decodeRequest(line []byte, req *request) bool {
	d := fastDecoder{b: line}
	if !d.object(req) {
		*req = request{}
		return false
	}
	d.ws()
	if d.i != len(d.b) {
		*req = request{}
		return false
	}
	return true
}

func (d *fastDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\r', '\n':
			d.i++
		default:
			return
		}
	}
}

// consume skips whitespace and the byte c.
func (d *fastDecoder) consume(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters, in valid UTF-8.
func (d *fastDecoder) str() (string, bool) {
	if !d.consume('"') {
		return "", false
	}
	start := d.i
	ascii := true
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			s := d.b[start:d.i]
			d.i++
			if !ascii && !utf8.Valid(s) {
				return "", false
			}
			return string(s), true
		case c == '\\' || c < 0x20:
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
		d.i++
	}
	return "", false
}

// int reads an integer (no fraction, no exponent).
func (d *fastDecoder) int() (int64, bool) {
	d.ws()
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	for d.i < len(d.b) && d.b[d.i] >= '0' && d.b[d.i] <= '9' {
		d.i++
	}
	if d.i < len(d.b) {
		switch d.b[d.i] {
		case '.', 'e', 'E':
			return 0, false
		}
	}
	n, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	if err != nil || (d.i-start > 1 && d.b[start] == '0') || (d.i-start > 2 && d.b[start] == '-' && d.b[start+1] == '0') {
		return 0, false // leading zeros are not JSON
	}
	return n, true
}

// raw captures one JSON value (checked with json.Valid: it is stored and sent back as is).
func (d *fastDecoder) raw() (json.RawMessage, bool) {
	d.ws()
	start := d.i
	if !d.skip(0) {
		return nil, false
	}
	v := d.b[start:d.i]
	if !json.Valid(v) {
		return nil, false
	}
	return append(json.RawMessage(nil), v...), true
}

// skip moves past one value, roughly; raw validates what it spans.
func (d *fastDecoder) skip(depth int) bool {
	if depth > 64 {
		return false
	}
	d.ws()
	if d.i >= len(d.b) {
		return false
	}
	switch c := d.b[d.i]; {
	case c == '"':
		d.i++
		for d.i < len(d.b) {
			switch d.b[d.i] {
			case '\\':
				d.i += 2
				continue
			case '"':
				d.i++
				return true
			}
			d.i++
		}
		return false
	case c == '{' || c == '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		d.i++
		if d.consume(closing) {
			return true
		}
		for {
			if c == '{' {
				if _, ok := d.skipKey(); !ok {
					return false
				}
			}
			if !d.skip(depth + 1) {
				return false
			}
			if d.consume(closing) {
				return true
			}
			if !d.consume(',') {
				return false
			}
		}
	default:
		start := d.i
		for d.i < len(d.b) {
			switch d.b[d.i] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				return d.i > start
			}
			d.i++
		}
		return d.i > start
	}
}

func (d *fastDecoder) skipKey() (string, bool) {
	d.ws()
	if !d.skip(64) { // a string: depth does not matter
		return "", false
	}
	return "", d.consume(':')
}

func (d *fastDecoder) strings() ([]string, bool) {
	if !d.consume('[') {
		return nil, false
	}
	out := []string{}
	if d.consume(']') {
		return out, true
	}
	for {
		s, ok := d.str()
		if !ok {
			return nil, false
		}
		out = append(out, s)
		if d.consume(']') {
			return out, true
		}
		if !d.consume(',') {
			return nil, false
		}
	}
}

func (d *fastDecoder) stringMap() (map[string]string, bool) {
	if !d.consume('{') {
		return nil, false
	}
	out := make(map[string]string)
	if d.consume('}') {
		return out, true
	}
	for {
		k, ok := d.str()
		if !ok || !d.consume(':') {
			return nil, false
		}
		v, ok := d.str()
		if !ok {
			return nil, false
		}
		out[k] = v
		if d.consume('}') {
			return out, true
		}
		if !d.consume(',') {
			return nil, false
		}
	}
}

func (d *fastDecoder) object(req *request) bool {
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	for {
		key, ok := d.str()
		if !ok || !d.consume(':') {
			return false
		}
		switch key {
		case "type":
			req.Type, ok = d.str()
		case "taskId":
			req.TaskID, ok = d.str()
		case "cwd":
			req.Cwd, ok = d.str()
		case "stdout":
			req.Stdout, ok = d.str()
		case "stderr":
			req.Stderr, ok = d.str()
		case "signal":
			req.Signal, ok = d.str()
		case "shell":
			var s string
			s, ok = d.str()
			req.Shell = &s
		case "argv":
			req.Argv, ok = d.strings()
		case "env":
			req.Env, ok = d.stringMap()
		case "id":
			req.ID, ok = d.raw()
		case "meta":
			req.Meta, ok = d.raw()
		case "envId":
			var n int64
			n, ok = d.int()
			v := int(n)
			ok = ok && int64(v) == n
			req.EnvID = &v
		case "graceMs":
			var n int64
			n, ok = d.int()
			req.GraceMs = &n
		case "n":
			var n int64
			n, ok = d.int()
			req.N = int(n)
			ok = ok && int64(req.N) == n
		case "concurrency":
			var n int64
			n, ok = d.int()
			req.Concurrency = int(n)
			ok = ok && int64(req.Concurrency) == n
		default:
			return false // encoding/json knows what to do with it
		}
		if !ok {
			return false
		}
		if d.consume('}') {
			return true
		}
		if !d.consume(',') {
			return false
		}
	}
}
