//go:build linux

// One client connection: a reader goroutine (agent.read) and a single writer goroutine that
// drains an unbounded queue, so producers (child waiters) never block on a slow client and
// bursts of events leave in few write calls.
package main

import (
	"bufio"
	"net"
	"sync"
)

type conn struct {
	nc net.Conn

	// envBases are the environment bases this client defined (env.go); used by the
	// connection's reader goroutine only.
	envBases map[int]*envBase

	mu         sync.Mutex
	queue      [][]byte
	closing    bool // close once the queue has been written
	wake       chan struct{}
	done       chan struct{}
	closedOnce sync.Once
}

func newConn(nc net.Conn) *conn {
	c := &conn{nc: nc, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go c.write()
	return c
}

func (c *conn) send(line []byte) {
	c.mu.Lock()
	c.queue = append(c.queue, line)
	c.mu.Unlock()
	c.poke()
}

func (c *conn) poke() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *conn) closeAfterFlush() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.poke()
}

func (c *conn) close() {
	c.closedOnce.Do(func() {
		close(c.done)
		c.nc.Close()
	})
}

func (c *conn) write() {
	w := bufio.NewWriterSize(c.nc, 64<<10)
	var batch [][]byte
	for {
		select {
		case <-c.wake:
		case <-c.done:
			return
		}
		c.mu.Lock()
		batch, c.queue = c.queue, batch[:0]
		closing := c.closing
		c.mu.Unlock()
		for i, line := range batch {
			if _, err := w.Write(line); err != nil {
				c.close()
				return
			}
			batch[i] = nil
		}
		if err := w.Flush(); err != nil {
			c.close()
			return
		}
		if closing {
			c.close()
			return
		}
	}
}
