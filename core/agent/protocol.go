//go:build linux

// The wire types of the agent protocol (newline-delimited JSON); the full description lives
// in core/src/backends/local/agent-client.ts, the only client.
package main

import "encoding/json"

// request is every request shape in one struct; Type selects which fields matter.
type request struct {
	Type string `json:"type"`
	// ID correlates a reply (list, ping, bench) with its request; echoed verbatim.
	ID json.RawMessage `json:"id,omitempty"`

	TaskID string            `json:"taskId,omitempty"`
	Argv   []string          `json:"argv,omitempty"`
	Shell  *string           `json:"shell,omitempty"`
	Env    map[string]string `json:"env,omitempty"`
	// EnvID names an environment base: defined by an env request, used by a launch (env.go).
	EnvID  *int   `json:"envId,omitempty"`
	Cwd    string `json:"cwd,omitempty"`
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
	// Meta is opaque to the agent: stored with the task and returned by list, so that a
	// restarted core knows what it had reserved for the task.
	Meta json.RawMessage `json:"meta,omitempty"`

	Signal  string `json:"signal,omitempty"`
	GraceMs *int64 `json:"graceMs,omitempty"`

	N           int `json:"n,omitempty"`
	Concurrency int `json:"concurrency,omitempty"`
}

// event is every event and reply shape in one struct.
type event struct {
	Type     string          `json:"type"`
	ID       json.RawMessage `json:"id,omitempty"`
	TaskID   string          `json:"taskId,omitempty"`
	Pid      int             `json:"pid,omitempty"`
	ExitCode *int            `json:"exitCode,omitempty"`
	Signal   string          `json:"signal,omitempty"`
	Lost     bool            `json:"lost,omitempty"`
	Killed   bool            `json:"killed,omitempty"`
	Message  string          `json:"message,omitempty"`
	Ts       int64           `json:"ts,omitempty"`
	Tasks    *[]record       `json:"tasks,omitempty"`
	Version  int             `json:"version,omitempty"`

	// bench reply
	N         int     `json:"n,omitempty"`
	ElapsedMs float64 `json:"elapsedMs,omitempty"`
	Failures  int     `json:"failures,omitempty"`
}

// protocolVersion 2: env requests and launches naming an environment base (envId).
const protocolVersion = 2

// Task states as the agent reports them.
const (
	stateLaunching = "launching" // accepted, process not started yet
	stateRunning   = "running"
	stateExited    = "exited" // terminal: exitCode or signal, or lost
	stateError     = "error"  // terminal: could not be started
)

// record is what the agent knows about a task; persisted as tasks/<taskId>.json and listed.
type record struct {
	TaskID string `json:"taskId"`
	State  string `json:"state"`

	Argv   []string        `json:"argv,omitempty"`
	Shell  *string         `json:"shell,omitempty"`
	Cwd    string          `json:"cwd,omitempty"`
	Stdout string          `json:"stdout,omitempty"`
	Stderr string          `json:"stderr,omitempty"`
	Meta   json.RawMessage `json:"meta,omitempty"`

	Pid int `json:"pid,omitempty"`
	// StartTicks is field 22 of /proc/<pid>/stat: with the pid it identifies the process
	// across pid reuse when a restarted agent re-adopts it.
	StartTicks uint64 `json:"startTicks,omitempty"`
	StartedAt  int64  `json:"startedAt,omitempty"`

	EndedAt  int64  `json:"endedAt,omitempty"`
	ExitCode *int   `json:"exitCode,omitempty"`
	Signal   string `json:"signal,omitempty"`
	Lost     bool   `json:"lost,omitempty"`
	Killed   bool   `json:"killed,omitempty"`
	Message  string `json:"message,omitempty"`
}

func (r *record) terminal() bool { return r.State == stateExited || r.State == stateError }

// terminalEvent is the event that reports a terminal record.
func (r *record) terminalEvent() event {
	if r.State == stateError {
		return event{Type: "error", TaskID: r.TaskID, Message: r.Message, Ts: r.EndedAt}
	}
	return event{Type: "exited", TaskID: r.TaskID, ExitCode: r.ExitCode, Signal: r.Signal,
		Lost: r.Lost, Killed: r.Killed, Message: r.Message, Ts: r.EndedAt}
}
