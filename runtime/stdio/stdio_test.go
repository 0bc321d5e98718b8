package stdio

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func readLogFile(t *testing.T, path string) (stdout, stderr string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var so, se bytes.Buffer
	if err := ReadLog(f, &so, &se); err != nil {
		t.Fatal(err)
	}
	return so.String(), se.String()
}

func mkfifo(t *testing.T, dir, name string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := unix.Mkfifo(p, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The log keeps the streams apart and is lossless: a character split between
// two writes stays whole, bytes that are not UTF-8 come back as they were.
func TestLogRoundTrip(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	p, err := NewPipes(context.Background(), Config{LogPath: logPath})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, out, errw := p.Child()
	euro := []byte("€") // three bytes
	out.Write([]byte("a"))
	out.Write(euro[:1])
	time.Sleep(20 * time.Millisecond) // let the copier read the cut-off rune
	out.Write(euro[1:])
	out.Write([]byte("\n"))
	errw.Write([]byte{0xff, 0xfe, '\n'})
	p.CloseChild()
	if err := p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	so, se := readLogFile(t, logPath)
	if so != "a€\n" || se != "\xff\xfe\n" {
		t.Fatalf("round trip: stdout %q stderr %q", so, se)
	}
	raw, _ := os.ReadFile(logPath)
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e Entry
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		// Text stays text: the split euro sign must not turn a stdout
		// chunk into base64 bytes.
		if (e.Stream == Stdout) != (e.Bytes == nil) || e.Time.IsZero() {
			t.Fatalf("log entry %q: text stored as bytes, or bytes as text", line)
		}
	}
}

// A FIFO client that goes away mid-stream costs only its own copy: the log
// gets everything, Wait returns, nothing blocks.
func TestFIFOClientDisconnects(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	fifoPath := mkfifo(t, dir, "stdout")
	p, err := NewPipes(context.Background(), Config{LogPath: logPath, Stdout: fifoPath})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client, err := os.Open(fifoPath)
	if err != nil {
		t.Fatal(err)
	}
	_, out, _ := p.Child()
	line := strings.Repeat("x", 99) + "\n"
	out.Write([]byte(line))
	buf := make([]byte, 100)
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != line {
		t.Fatalf("client read %q, %v", buf, err)
	}
	client.Close() // the client goes away

	var want strings.Builder
	want.WriteString(line)
	// Far more than a pipe buffer and the client queue: were the copy
	// tied to the client, these writes would block.
	written := make(chan struct{})
	go func() {
		for i := 0; i < 20000; i++ {
			out.Write([]byte(line))
		}
		close(written)
	}()
	for i := 0; i < 20000; i++ {
		want.WriteString(line)
	}
	select {
	case <-written:
	case <-time.After(20 * time.Second):
		t.Fatal("process output blocked after its FIFO client went away")
	}
	p.CloseChild()
	if err := p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	so, _ := readLogFile(t, logPath)
	if so != want.String() {
		t.Fatalf("log has %d bytes of stdout, want %d", len(so), want.Len())
	}
	if p.Dropped() == 0 {
		t.Fatal("no output counted as dropped for the departed client")
	}
}

// A client that holds its FIFO open but never reads gets its copy dropped
// beyond its queue; the process is never blocked and the log gets it all.
func TestFIFOClientStalls(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	fifoPath := mkfifo(t, dir, "stdout")
	p, err := NewPipes(context.Background(), Config{LogPath: logPath, Stdout: fifoPath, QueueChunks: 4, FIFODrain: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	client, err := os.Open(fifoPath)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	_, out, _ := p.Child()
	chunk := strings.Repeat("y", 4095) + "\n"
	written := make(chan struct{})
	go func() {
		for i := 0; i < 2000; i++ {
			out.Write([]byte(chunk))
		}
		close(written)
	}()
	select {
	case <-written:
	case <-time.After(20 * time.Second):
		t.Fatal("process output blocked behind a client that does not read")
	}
	p.CloseChild()
	if err := p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if so, _ := readLogFile(t, logPath); len(so) != 2000*len(chunk) {
		t.Fatalf("log has %d bytes, want %d", len(so), 2000*len(chunk))
	}
}

// A client that never opens its FIFO neither blocks the shim nor holds Wait
// beyond the drain time.
func TestFIFOClientNeverComes(t *testing.T) {
	dir := t.TempDir()
	logPath := filepath.Join(dir, "c.log")
	p, err := NewPipes(context.Background(), Config{
		LogPath: logPath, Stdout: mkfifo(t, dir, "o"), Stderr: mkfifo(t, dir, "e"),
		Stdin: mkfifo(t, dir, "i"), FIFODrain: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	_, out, errw := p.Child()
	out.Write([]byte("o\n"))
	errw.Write([]byte("e\n"))
	p.CloseChild()
	start := time.Now()
	if err := p.Wait(waitCtx(t)); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Wait took %v with absent clients", d)
	}
	if so, se := readLogFile(t, logPath); so != "o\n" || se != "e\n" {
		t.Fatalf("log: %q %q", so, se)
	}
}

// Stdin flows from the client's FIFO to the process until the client closes
// it; CloseIO ends it early.
func TestStdin(t *testing.T) {
	dir := t.TempDir()
	in := mkfifo(t, dir, "in")
	p, err := NewPipes(context.Background(), Config{LogPath: filepath.Join(dir, "c.log"), Stdin: in})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	childIn, _, _ := p.Child()
	w, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hello\n"))
	w.Close()
	got, err := io.ReadAll(childIn) // EOF once the client closed
	if err != nil || string(got) != "hello\n" {
		t.Fatalf("process stdin %q, %v", got, err)
	}

	// CloseIO without the client ever closing
	in2 := mkfifo(t, dir, "in2")
	p2, err := NewPipes(context.Background(), Config{LogPath: filepath.Join(dir, "c2.log"), Stdin: in2})
	if err != nil {
		t.Fatal(err)
	}
	defer p2.Close()
	child2, _, _ := p2.Child()
	p2.CloseIO()
	done := make(chan struct{})
	go func() { io.ReadAll(child2); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("CloseIO did not close the process's stdin")
	}
}

func TestResizeWithoutTerminal(t *testing.T) {
	p, err := NewPipes(context.Background(), Config{LogPath: filepath.Join(t.TempDir(), "c.log")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.CloseChild()
	if err := p.Resize(80, 24); err == nil {
		t.Fatal("resize of a process without terminal succeeded")
	}
}
