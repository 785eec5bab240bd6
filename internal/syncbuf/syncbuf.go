// Package syncbuf provides a bytes.Buffer that several goroutines may write and read at
// once: a log sink for tests that read what a server logged while it runs.
package syncbuf

import (
	"bytes"
	"sync"
)

// Buffer is an io.Writer whose writes and reads are serialised. The zero value is ready.
type Buffer struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

// Write appends p to the buffer.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
