//go:build linux

// Durable task records: an append-only journal (<dir>/tasks.journal, one JSON line per
// change: {"put":record} or {"del":taskId}) written by one goroutine in group writes, and
// compacted (live records rewritten to a temporary file renamed over it) at start and
// whenever dead lines dominate. An agent exiting idle closes it and removes it (it holds no
// live record then), so the next agent starts with no journal at all.
//
// Why not a file per task: creating files is the expensive part of the launch path
// (0.06-0.3 ms each on the machine this was measured on); a task needs two records (start
// and end) and a deletion, while one journal write carries the records of a whole burst.
//
// A record is written BEFORE the event that reports it is emitted: `then` runs after the
// write returns. Not fsynced: records must survive the agent or core dying, which the page
// cache does; a machine crash kills the jobs too, and core then sees them as unknown (LOST).
// A line torn by a crash mid-write is the last one and is ignored when the journal is read.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"sync"
	"sync/atomic"
)

type journalLine struct {
	Put *record `json:"put,omitempty"`
	Del string  `json:"del,omitempty"`
}

type journalEntry struct {
	taskID string
	line   []byte // nil: delete
	then   func()
	// closed, when set, makes this the last entry: the writer stops after it and reports
	// whether it removed the (empty) journal.
	closed chan<- journalClosed
}

type journalClosed struct {
	removed bool
	err     error
}

type journal struct {
	path string
	f    *os.File

	mu      sync.Mutex
	pending []journalEntry
	wake    chan struct{}
	// holds > 0 defers writing (see hold); atomic.
	holds int32

	// Owned by the writer goroutine (and by open/load before it starts).
	live  map[string][]byte // latest put line of every task not deleted
	lines int               // lines in the file
}

// openJournal reads the journal, compacts it and returns the live records.
func openJournal(path string) (*journal, []record, error) {
	j := &journal{path: path, wake: make(chan struct{}, 1), live: make(map[string][]byte)}
	recs, err := j.load()
	if err != nil {
		return nil, nil, err
	}
	if err := j.compact(); err != nil {
		return nil, nil, err
	}
	go j.run()
	return j, recs, nil
}

func (j *journal) load() ([]record, error) {
	f, err := os.Open(j.path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	byID := make(map[string]record)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	n := 0
	for sc.Scan() {
		n++
		var l journalLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			log.Printf("%s:%d: ignoring an unreadable line (torn by a crash?): %v", j.path, n, err)
			continue
		}
		switch {
		case l.Put != nil && l.Put.TaskID != "":
			byID[l.Put.TaskID] = *l.Put
			j.live[l.Put.TaskID] = append(append([]byte(nil), sc.Bytes()...), '\n')
		case l.Del != "":
			delete(byID, l.Del)
			delete(j.live, l.Del)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %v", j.path, err)
	}
	recs := make([]record, 0, len(byID))
	for _, r := range byID {
		recs = append(recs, r)
	}
	return recs, nil
}

// compact rewrites the journal with the live records only and reopens it for appending.
func (j *journal) compact() error {
	var buf bytes.Buffer
	for _, line := range j.live {
		buf.Write(line)
	}
	if err := writeFileAtomic(j.path, buf.Bytes()); err != nil {
		return err
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f = f
	j.lines = len(j.live)
	return nil
}

// put records a task's state; then (if not nil) runs once it is written.
func (j *journal) put(r *record, then func()) {
	b := make([]byte, 0, 512)
	b = append(b, `{"put":`...)
	b = r.appendJSON(b)
	j.enqueue(journalEntry{taskID: r.TaskID, line: append(b, '}', '\n'), then: then})
}

// del forgets a task.
func (j *journal) del(taskID string) {
	j.enqueue(journalEntry{taskID: taskID})
}

// close writes what is queued, stops the writer and removes the journal if no record is
// live. Nothing may be queued after it: the agent calls it only on its way out.
func (j *journal) close() (removed bool, err error) {
	ch := make(chan journalClosed, 1)
	j.enqueue(journalEntry{closed: ch})
	r := <-ch
	return r.removed, r.err
}

func (j *journal) enqueue(e journalEntry) {
	j.mu.Lock()
	j.pending = append(j.pending, e)
	j.mu.Unlock()
	if e.closed != nil || atomic.LoadInt32(&j.holds) == 0 {
		j.poke()
	}
}

// hold defers writing until the matching release: a reader that has more requests already
// received (a burst of launches) holds the journal while it handles them, so their records
// leave in one write and their events in one message to the client, instead of one each.
func (j *journal) hold() { atomic.AddInt32(&j.holds, 1) }

func (j *journal) release() {
	if atomic.AddInt32(&j.holds, -1) == 0 {
		j.poke()
	}
}

func (j *journal) poke() {
	select {
	case j.wake <- struct{}{}:
	default:
	}
}

func (j *journal) run() {
	var batch []journalEntry
	var buf bytes.Buffer
	for range j.wake {
		j.mu.Lock()
		batch, j.pending = j.pending, batch[:0]
		j.mu.Unlock()
		buf.Reset()
		var closed chan<- journalClosed
		for _, e := range batch {
			if e.closed != nil {
				closed = e.closed
				continue
			}
			if e.line == nil {
				buf.WriteString(`{"del":`)
				buf.Write(appendJSONString(nil, e.taskID))
				buf.WriteString("}\n")
				delete(j.live, e.taskID)
			} else {
				buf.Write(e.line)
				j.live[e.taskID] = e.line
			}
			j.lines++
		}
		if _, err := j.f.Write(buf.Bytes()); err != nil {
			// Keep the jobs' events flowing; without records a restart reports them LOST.
			log.Printf("cannot write the task journal: %v", err)
		}
		for i, e := range batch {
			if e.then != nil {
				e.then()
			}
			batch[i] = journalEntry{}
		}
		if closed != nil {
			closed <- j.finish()
			return
		}
		if j.lines > 4*len(j.live)+10000 {
			if err := j.compact(); err != nil {
				log.Printf("cannot compact the task journal: %v", err)
			}
		}
	}
}

// finish closes the file, removing it when no record is live.
func (j *journal) finish() journalClosed {
	err := j.f.Close()
	if len(j.live) > 0 {
		return journalClosed{err: err}
	}
	if err := os.Remove(j.path); err != nil && !os.IsNotExist(err) {
		return journalClosed{err: err}
	}
	return journalClosed{removed: true}
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
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
	j, recs, err := openJournal(a.journalPath())
	if err != nil {
		return err
	}
	a.journal = j
	var lost []*task
	for _, r := range recs {
		t := &task{rec: r}
		a.tasks[r.TaskID] = t
		if r.State == stateRunning || r.State == stateLaunching {
			if r.State == stateRunning && processAlive(r.Pid, r.StartTicks) {
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
	if r.Pid > 0 {
		r.Message = fmt.Sprintf("the agent restarted while process %d ran; its exit status is unknown", r.Pid)
	} else {
		r.Message = "the agent restarted while the task was being started; its exit status is unknown"
	}
}
