//go:build linux

// Job environments. Most of a launch's environment is the same for every task of a run (the
// inherited variables, run id, endpoint, the step's env), and it used to be most of each
// launch message: sent, decoded and validated once per task. A client defines an environment
// base once per connection ({"type":"env","envId":N,"env":{…}}) and a launch names it
// ("envId":N) with only the variables that differ ("env"). Bases belong to the connection:
// a new connection starts without any.
package main

import (
	"fmt"
	"strings"
)

// envBase is a validated environment, ready to be copied into a job's.
type envBase struct {
	vars  []string       // "K=V"
	index map[string]int // K → position in vars
}

// maxEnvBases bounds what a client can make the agent hold per connection.
const maxEnvBases = 64

func checkEnvVar(k, v string) error {
	if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
		return fmt.Errorf("environment variable %q is not valid", k)
	}
	return nil
}

func newEnvBase(env map[string]string) (*envBase, error) {
	b := &envBase{vars: make([]string, 0, len(env)), index: make(map[string]int, len(env))}
	for k, v := range env {
		if err := checkEnvVar(k, v); err != nil {
			return nil, err
		}
		b.index[k] = len(b.vars)
		b.vars = append(b.vars, k+"="+v)
	}
	return b, nil
}

// defineEnv handles an env request on connection c.
func (c *conn) defineEnv(req *request) error {
	if req.EnvID == nil || *req.EnvID < 0 || *req.EnvID >= maxEnvBases {
		return fmt.Errorf("env: envId must be a number from 0 to %d", maxEnvBases-1)
	}
	b, err := newEnvBase(req.Env)
	if err != nil {
		return fmt.Errorf("env: %v", err)
	}
	if c.envBases == nil {
		c.envBases = make(map[int]*envBase)
	}
	c.envBases[*req.EnvID] = b
	return nil
}

// jobEnv builds a launch's environment: its base (if it names one) with its own variables
// over it, plus the agent's PATH when neither has one. It returns the PATH commands are
// resolved on.
func (c *conn) jobEnv(req *request, agentPath string) (env []string, pathEnv string, err error) {
	var base *envBase
	if req.EnvID != nil {
		base = c.envBases[*req.EnvID]
		if base == nil {
			return nil, "", fmt.Errorf("launch: envId %d is not defined on this connection (send an env request first)", *req.EnvID)
		}
		env = make([]string, len(base.vars), len(base.vars)+len(req.Env)+1)
		copy(env, base.vars)
	} else {
		env = make([]string, 0, len(req.Env)+1)
	}
	for k, v := range req.Env {
		if err := checkEnvVar(k, v); err != nil {
			return nil, "", fmt.Errorf("launch: %v", err)
		}
		if i, ok := base.lookup(k); ok {
			env[i] = k + "=" + v
		} else {
			env = append(env, k+"="+v)
		}
	}
	pathEnv, hasPath := req.Env["PATH"]
	if !hasPath {
		if i, ok := base.lookup("PATH"); ok {
			pathEnv, hasPath = base.vars[i][len("PATH="):], true
		}
	}
	if !hasPath {
		pathEnv = agentPath
		env = append(env, "PATH="+pathEnv)
	}
	return env, pathEnv, nil
}

func (b *envBase) lookup(k string) (int, bool) {
	if b == nil {
		return 0, false
	}
	i, ok := b.index[k]
	return i, ok
}
