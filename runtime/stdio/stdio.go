// Package stdio owns the plumbing between a container process and the
// consumers of its standard streams: the per-container log file, which gets
// every byte of output, and the optional FIFOs of an attached client
// (containerd, ctr, the podbox CLI) that pass stdin/stdout/stderr paths in
// Task.Create and Exec.
//
// Output is always copied to the log first; a client FIFO is fed from a
// bounded queue by its own goroutine, so a client that is slow, absent or gone
// can lose its own copy of the output but never stalls the log or the
// container (the container writes to a pipe the shim drains, never to the
// FIFO). The package never starts, signals or waits for processes; it only
// moves bytes and tells when the last of them has moved (IO.Wait).
//
// # Log format
//
// The log is JSON lines, one per chunk read from the process:
//
//	{"time":"2006-01-02T15:04:05.999999999Z","stream":"stdout","log":"hello\n"}
//
// time is RFC 3339 with nanoseconds, stream is "stdout" or "stderr" (in
// terminal mode everything is "stdout": a pty merges the streams). A chunk
// that is not valid UTF-8 goes in "bytes" (base64) instead of "log", so the
// log is lossless; a multi-byte character split between two reads is carried
// over to the next chunk rather than mangled. ReadLog writes a log back out.
package stdio

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"
	"unicode/utf8"
)

// Stream names used in the log.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// Entry is one line of the log.
type Entry struct {
	Time   time.Time `json:"time"`
	Stream string    `json:"stream"`
	// Log is the chunk when it is valid UTF-8.
	Log string `json:"log,omitempty"`
	// Bytes is the chunk when it is not (base64 in JSON).
	Bytes []byte `json:"bytes,omitempty"`
}

// ReadLog copies the output recorded in a log to stdout and stderr, each
// chunk to the writer of its stream. A torn last line (the shim died
// mid-write) is ignored.
func ReadLog(log io.Reader, stdout, stderr io.Writer) error {
	r := bufio.NewReader(log)
	for {
		line, err := r.ReadBytes('\n')
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read log: %w", err)
		}
		var e Entry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("read log: bad entry %.80q: %w", line, err)
		}
		w := stdout
		if e.Stream == Stderr {
			w = stderr
		}
		data := e.Bytes
		if data == nil {
			data = []byte(e.Log)
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("read log: write %s: %w", e.Stream, err)
		}
	}
}

// logFile appends entries from several streams to one file.
type logFile struct {
	mu sync.Mutex
	f  *os.File
}

func openLog(path string) (*logFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("log %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", path, err)
	}
	return &logFile{f: f}, nil
}

// write appends one entry. One Write call per line keeps lines whole even if
// another process appends to the file.
func (l *logFile) write(stream string, chunk []byte, valid bool) error {
	e := Entry{Time: time.Now(), Stream: stream}
	if valid {
		e.Log = string(chunk)
	} else {
		e.Bytes = chunk
	}
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err = l.f.Write(b)
	return err
}

func (l *logFile) Close() error { return l.f.Close() }

// splitUTF8 returns the longest prefix of b that ends on a character
// boundary when b is valid UTF-8 apart from a character cut off at its end,
// and the rest to carry over. valid reports whether the prefix is UTF-8.
func splitUTF8(b []byte) (head, carry []byte, valid bool) {
	if utf8.Valid(b) {
		return b, nil, true
	}
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) && utf8.Valid(b[:i]) {
				return b[:i], b[i:], true
			}
			break
		}
	}
	return b, nil, false
}
