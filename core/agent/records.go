//go:build linux

// Durable task records: tasks/<taskId>.json, replaced atomically (write a temporary file,
// rename it over the old one). Not fsynced: they must survive the agent and core dying,
// which the page cache does; a machine crash kills the jobs too, and core then sees the
// tasks as unknown (LOST) and retries them.
package main

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

var tmpSeq atomic.Uint64

func (a *agent) recordPath(taskID string) string {
	return filepath.Join(a.tasksDir, taskID+".json")
}

func (a *agent) writeRecord(r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFileAtomic(a.recordPath(r.TaskID), b)
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + "." + strconv.FormatUint(tmpSeq.Add(1), 10) + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// loadRecords rebuilds the task table after a restart: ended tasks wait for their ack,
// running ones are re-adopted if their process is still the same one, else they are lost.
func (a *agent) loadRecords() error {
	entries, err := os.ReadDir(a.tasksDir)
	if err != nil {
		return err
	}
	var lost []*task
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(a.tasksDir, name)
		if strings.HasSuffix(name, ".tmp") {
			os.Remove(path) // a write interrupted by a crash; the previous record still stands
			continue
		}
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil || r.TaskID+".json" != name {
			log.Printf("ignoring unreadable task record %s (moved to %s.bad): %v", name, name, err)
			os.Rename(path, path+".bad")
			continue
		}
		t := &task{rec: r}
		a.tasks[r.TaskID] = t
		if r.State == stateRunning {
			if processAlive(r.Pid, r.StartTicks) {
				a.orphans[r.TaskID] = t
			} else {
				lost = append(lost, t)
			}
		}
	}
	for _, t := range lost {
		a.finish(t, markLost)
	}
	if len(a.orphans) > 0 {
		log.Printf("re-adopted %d running task(s); their exit codes will be unknown", len(a.orphans))
		go a.watchOrphans()
	}
	return nil
}

func markLost(r *record) {
	r.State = stateExited
	r.Lost = true
	r.Message = fmt.Sprintf("the agent restarted while process %d ran; its exit status is unknown", r.Pid)
}
