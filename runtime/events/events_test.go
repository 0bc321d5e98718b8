package events

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"

	types "github.com/podbox/podbox/runtime/apitypes"
	"github.com/podbox/podbox/runtime/eventsapi"
	apievents "github.com/podbox/podbox/runtime/taskevents"
)

// fakeContainerd serves containerd's ttrpc Events service and records what
// it is forwarded, as containerd's event exchange would receive it.
type fakeContainerd struct {
	delay time.Duration // per Forward, to keep events queued

	mu         sync.Mutex
	envelopes  []*types.Envelope
	namespaces []string // the ttrpc namespace header of each request
	arrived    chan struct{}
	// gone refuses what still reaches a stopped fake: ttrpc's Close can
	// leave a connection reading a moment longer, and a real containerd
	// that stopped answers nothing.
	gone atomic.Bool
}

func (f *fakeContainerd) Forward(ctx context.Context, req *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	if f.gone.Load() {
		return nil, errors.New("containerd stopped")
	}
	time.Sleep(f.delay)
	ns, _ := ttrpc.GetMetadataValue(ctx, namespaceHeader)
	f.mu.Lock()
	f.envelopes = append(f.envelopes, req.Envelope)
	f.namespaces = append(f.namespaces, ns)
	f.mu.Unlock()
	select {
	case f.arrived <- struct{}{}:
	default:
	}
	return &emptypb.Empty{}, nil
}

func (f *fakeContainerd) received() ([]*types.Envelope, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*types.Envelope(nil), f.envelopes...), append([]string(nil), f.namespaces...)
}

// socketPath returns a short path for a unix socket (t.TempDir can exceed
// the 108-byte sun_path limit).
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "podbox-ev-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "ttrpc.sock")
}

// serve starts a fake containerd on path and returns it with a stop func.
func serve(t *testing.T, path string, f *fakeContainerd) (stop func()) {
	t.Helper()
	if f.arrived == nil {
		f.arrived = make(chan struct{}, 1)
	}
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	eventsapi.RegisterEventsService(srv, f)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(context.Background(), l)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			f.gone.Store(true)
			srv.Close()
			<-served
		})
	}
	t.Cleanup(stop)
	return stop
}

func fastRetries(p *Publisher) {
	p.backoff = 20 * time.Millisecond
	p.maxBackoff = 200 * time.Millisecond
	p.attempts = 20 // about 3 s
}

// taskEvents is one task's life, in the order a shim publishes it.
func taskEvents(id string) []struct {
	topic string
	ev    proto.Message
	url   string
} {
	return []struct {
		topic string
		ev    proto.Message
		url   string
	}{
		{TopicTaskCreate, &apievents.TaskCreate{ContainerID: id, Bundle: "/b/" + id, Pid: 10}, "containerd.events.TaskCreate"},
		{TopicTaskStart, &apievents.TaskStart{ContainerID: id, Pid: 10}, "containerd.events.TaskStart"},
		{TopicTaskExecAdded, &apievents.TaskExecAdded{ContainerID: id, ExecID: "e1"}, "containerd.events.TaskExecAdded"},
		{TopicTaskExecStarted, &apievents.TaskExecStarted{ContainerID: id, ExecID: "e1", Pid: 11}, "containerd.events.TaskExecStarted"},
		{TopicTaskPaused, &apievents.TaskPaused{ContainerID: id}, "containerd.events.TaskPaused"},
		{TopicTaskResumed, &apievents.TaskResumed{ContainerID: id}, "containerd.events.TaskResumed"},
		{TopicTaskOOM, &apievents.TaskOOM{ContainerID: id}, "containerd.events.TaskOOM"},
		{TopicTaskExit, &apievents.TaskExit{ContainerID: id, ID: id, Pid: 10, ExitStatus: 137}, "containerd.events.TaskExit"},
		{TopicTaskDelete, &apievents.TaskDelete{ContainerID: id, ID: id, Pid: 10, ExitStatus: 137}, "containerd.events.TaskDelete"},
	}
}

func TestPublishInOrder(t *testing.T) {
	path := socketPath(t)
	f := &fakeContainerd{}
	serve(t, path, f)
	ctx := context.Background()
	p := New(ctx, "unix://"+path, "k8s.io", nil)

	// Two tasks' lives interleaved, published from two goroutines: each
	// task's events must arrive in its own order.
	var wg sync.WaitGroup
	for _, id := range []string{"a", "b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range taskEvents(id) {
				if err := p.Publish(ctx, e.topic, e.ev); err != nil {
					t.Errorf("publish %s %s: %v", id, e.topic, err)
				}
			}
		}()
	}
	wg.Wait()
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}

	envs, nss := f.received()
	if len(envs) != 2*len(taskEvents("")) {
		t.Fatalf("received %d events, want %d", len(envs), 2*len(taskEvents("")))
	}
	next := map[string]int{}
	var last time.Time
	for i, env := range envs {
		if env.Namespace != "k8s.io" || nss[i] != "k8s.io" {
			t.Errorf("event %d: namespace %q, header %q, want k8s.io", i, env.Namespace, nss[i])
		}
		ts := env.Timestamp.AsTime()
		if ts.IsZero() || ts.Before(last.Add(-time.Second)) {
			t.Errorf("event %d: timestamp %v", i, ts)
		}
		last = ts
		// Decode as containerd does: by the Any's type URL alone.
		v, err := typeurl.UnmarshalAny(env.Event)
		if err != nil {
			t.Fatalf("event %d (%s): typeurl cannot decode %q: %v", i, env.Topic, env.Event.TypeUrl, err)
		}
		id := v.(interface{ GetContainerID() string }).GetContainerID()
		want := taskEvents(id)[next[id]]
		next[id]++
		if env.Topic != want.topic {
			t.Errorf("task %s event %d: topic %s, want %s", id, next[id], env.Topic, want.topic)
		}
		if env.Event.TypeUrl != want.url {
			t.Errorf("task %s %s: type URL %q, want %q", id, env.Topic, env.Event.TypeUrl, want.url)
		}
		if !proto.Equal(v.(proto.Message), want.ev) {
			t.Errorf("task %s %s: decoded %v, want %v", id, env.Topic, v, want.ev)
		}
	}
}

func TestPublishRetriesUntilContainerdIsUp(t *testing.T) {
	path := socketPath(t)
	ctx := context.Background()
	p := New(ctx, path, "default", nil)
	fastRetries(p)
	defer p.Close()

	// Nothing listens yet: the first attempts fail to connect.
	for _, e := range taskEvents("late") {
		if err := p.Publish(ctx, e.topic, e.ev); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	time.Sleep(150 * time.Millisecond)
	f := &fakeContainerd{}
	serve(t, path, f)
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	envs, _ := f.received()
	if len(envs) != len(taskEvents("")) {
		t.Fatalf("received %d events after containerd came up, want %d", len(envs), len(taskEvents("")))
	}
	for i, e := range taskEvents("late") {
		if envs[i].Topic != e.topic {
			t.Errorf("event %d: topic %s, want %s", i, envs[i].Topic, e.topic)
		}
	}
}

func TestPublishReconnectsAfterContainerdRestart(t *testing.T) {
	path := socketPath(t)
	ctx := context.Background()
	first := &fakeContainerd{}
	stop := serve(t, path, first)
	p := New(ctx, path, "default", nil)
	fastRetries(p)
	defer p.Close()

	if err := p.Publish(ctx, TopicTaskCreate, &apievents.TaskCreate{ContainerID: "c"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("first event not delivered")
	}
	stop() // containerd restarts: the publisher's connection dies
	second := &fakeContainerd{}
	serve(t, path, second)

	if err := p.Publish(ctx, TopicTaskStart, &apievents.TaskStart{ContainerID: "c"}); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// Delivery is at least once: the first event arrived, but if the
	// connection went before its answer came back, it is sent again. So
	// the restarted containerd gets the new event, after at most that one.
	envs, _ := second.received()
	n := len(envs)
	if n == 0 || n > 2 || envs[n-1].Topic != TopicTaskStart || n == 2 && envs[0].Topic != TopicTaskCreate {
		t.Fatalf("restarted containerd received %v, want %s, after at most a re-sent %s", envs, TopicTaskStart, TopicTaskCreate)
	}
}

func TestCloseFlushesQueue(t *testing.T) {
	path := socketPath(t)
	// A slow containerd keeps events queued when Close is called.
	f := &fakeContainerd{delay: 2 * time.Millisecond}
	serve(t, path, f)
	ctx := context.Background()
	p := New(ctx, path, "default", nil)
	const n = 200
	for i := range n {
		if err := p.Publish(ctx, TopicTaskExit, &apievents.TaskExit{ContainerID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	envs, _ := f.received()
	if len(envs) != n {
		t.Fatalf("Close returned with %d of %d events delivered", len(envs), n)
	}
	for i, env := range envs {
		var ev apievents.TaskExit
		if err := typeurl.UnmarshalTo(env.Event, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.ContainerID != fmt.Sprint(i) {
			t.Fatalf("event %d is task %s's: order lost", i, ev.ContainerID)
		}
	}
	if err := p.Publish(ctx, TopicTaskDelete, &apievents.TaskDelete{}); !errors.Is(err, ErrClosed) {
		t.Errorf("publish after close: %v, want ErrClosed", err)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestCloseGivesUpOnUnreachableContainerd(t *testing.T) {
	path := socketPath(t) // never served
	ctx := context.Background()
	p := New(ctx, path, "default", nil)
	fastRetries(p)
	p.closeWait = 200 * time.Millisecond
	for _, e := range taskEvents("x")[:3] {
		if err := p.Publish(ctx, e.topic, e.ev); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	err := p.Close()
	if err == nil || !strings.Contains(err.Error(), "3 events not delivered") {
		t.Fatalf("close: %v, want 3 events not delivered", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("close took %v with a 200ms deadline", d)
	}
}

func TestNoAddressDropsEvents(t *testing.T) {
	ctx := context.Background()
	p := New(ctx, "", "default", nil)
	for _, e := range taskEvents("cli") {
		if err := p.Publish(ctx, e.topic, e.ev); err != nil {
			t.Fatalf("publish %s: %v", e.topic, err)
		}
	}
	if err := p.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func TestPublishRejectsEmptyTopic(t *testing.T) {
	p := New(context.Background(), "", "default", nil)
	defer p.Close()
	if err := p.Publish(context.Background(), "", &apievents.TaskStart{}); err == nil {
		t.Fatal("publish with an empty topic succeeded")
	}
}
