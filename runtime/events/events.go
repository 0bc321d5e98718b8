// Package events publishes a shim's task events (create, start, exit, …) to
// containerd, the way containerd's own shims do: each event is wrapped in a
// types.Envelope and sent with the Forward call of containerd's ttrpc Events
// service, on the socket containerd names in $TTRPC_ADDRESS.
//
// It owns the delivery: a bounded queue per shim, one goroutine that sends in
// order, retries with backoff and reconnects. It never decides which events a
// shim emits, never blocks a caller for long, and never talks to containerd
// about anything but events. With no address (the podbox CLI, which has no
// containerd) events are accepted and dropped.
package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	types "github.com/podbox/podbox/runtime/apitypes"
	"github.com/podbox/podbox/runtime/eventsapi"
)

// Topics of the task events, as containerd's shims publish them (containerd's
// runtime package names them the same way).
const (
	TopicTaskCreate       = "/tasks/create"
	TopicTaskStart        = "/tasks/start"
	TopicTaskExit         = "/tasks/exit"
	TopicTaskDelete       = "/tasks/delete"
	TopicTaskExecAdded    = "/tasks/exec-added"
	TopicTaskExecStarted  = "/tasks/exec-started"
	TopicTaskOOM          = "/tasks/oom"
	TopicTaskPaused       = "/tasks/paused"
	TopicTaskResumed      = "/tasks/resumed"
	TopicTaskCheckpointed = "/tasks/checkpointed"
)

// namespaceHeader is the ttrpc metadata key containerd reads a request's
// namespace from (containerd's namespaces.TTRPCHeader); containerd's shims
// send it with every Forward, so we do too.
const namespaceHeader = "containerd-namespace-ttrpc"

const (
	// queueSize bounds the events waiting for containerd. containerd's shim
	// uses 2048; a sandbox has far fewer containers than a node.
	queueSize = 1024
	// enqueueWait is the longest Publish waits for room in a full queue.
	enqueueWait = time.Second
	// forwardTimeout bounds one Forward call, as in containerd's shim.
	forwardTimeout = 5 * time.Second
	// dialTimeout bounds one connection attempt to containerd's socket.
	dialTimeout = 2 * time.Second
	// closeTimeout is how long Close waits for the queue to drain.
	closeTimeout = 10 * time.Second
)

// ErrClosed is returned by Publish after Close.
var ErrClosed = errors.New("events publisher closed")

// Publisher sends events to one containerd. It is safe for concurrent use.
//
// Order: Publish stamps and enqueues an event on one FIFO channel, and a
// single goroutine sends the events from it one at a time, moving to the next
// only once the current one was delivered or given up on. So events published
// one after another (create, then start, then exit, then delete of a task —
// the shim publishes them from the code paths that complete those steps, in
// that order) reach containerd in that order; a retry delays the events
// behind it instead of letting them overtake it (containerd's own shim
// requeues a failed event behind the later ones, which can reorder them).
type Publisher struct {
	address   string // "" drops every event
	namespace string
	log       *slog.Logger
	base      context.Context // values only: the publisher lives until Close

	// retry policy; fields so that tests can shorten them.
	attempts   int
	backoff    time.Duration
	maxBackoff time.Duration
	closeWait  time.Duration

	mu     sync.RWMutex // guards closed against sends on the closed queue
	closed bool
	queue  chan *types.Envelope

	stop context.CancelFunc // aborts retries when Close gives up waiting
	ctx  context.Context    // the sender's context, cancelled by stop
	done chan struct{}      // closed when the sender goroutine returns

	// The sender goroutine's alone (aborted is read by Close after done).
	client  *ttrpc.Client
	aborted int // events dropped because Close stopped waiting
}

// New returns a publisher of events to the containerd ttrpc socket at
// address (a path, or unix://path as in $TTRPC_ADDRESS), stamped with
// namespace. It does not connect yet: the sender connects on the first event
// and again after every failure, so a containerd that is restarting does not
// fail the shim. With address "" it returns a publisher that drops events.
// ctx gives the publisher's logging and requests their values; cancelling it
// does not stop the publisher, Close does.
func New(ctx context.Context, address, namespace string, log *slog.Logger) *Publisher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Publisher{
		address:    strings.TrimPrefix(address, "unix://"),
		namespace:  namespace,
		log:        log.With("component", "events"),
		base:       context.WithoutCancel(ctx),
		attempts:   6, // about 6 s of retries, as containerd's shim's 5 requeues
		backoff:    100 * time.Millisecond,
		maxBackoff: 2 * time.Second,
		closeWait:  closeTimeout,
		queue:      make(chan *types.Envelope, queueSize),
		done:       make(chan struct{}),
	}
	p.ctx, p.stop = context.WithCancel(p.base)
	if p.address == "" {
		close(p.done)
		return p
	}
	go p.run()
	return p
}

// Publish queues event under topic for containerd and returns at once, or
// after at most a second if the queue is full (then the event is dropped and
// an error says so). Errors are the caller's only for logging: delivery
// failures after queueing are logged by the publisher, never returned.
func (p *Publisher) Publish(ctx context.Context, topic string, event proto.Message) error {
	if topic == "" {
		return errors.New("publish event: empty topic")
	}
	if p.address == "" {
		return nil
	}
	// containerd decodes the event by this URL, typeurl's own: the message's
	// full proto name, e.g. "containerd.events.TaskExit".
	a, err := typeurl.MarshalAnyToProto(event)
	if err != nil {
		return fmt.Errorf("publish event %s: %w", topic, err)
	}
	env := &types.Envelope{
		Timestamp: timestamppb.Now(),
		Namespace: p.namespace,
		Topic:     topic,
		Event:     a,
	}

	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return fmt.Errorf("publish event %s: %w", topic, ErrClosed)
	}
	select {
	case p.queue <- env:
		return nil
	default:
	}
	t := time.NewTimer(enqueueWait)
	defer t.Stop()
	select {
	case p.queue <- env:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("publish event %s: dropped, queue full: %w", topic, ctx.Err())
	case <-t.C:
		return fmt.Errorf("publish event %s: dropped: queue of %d events to %s full", topic, queueSize, p.address)
	}
}

// Close stops accepting events and waits until the queued ones are delivered
// (or given up on), at most about ten seconds; then it drops the rest and
// says how many. Close is idempotent.
func (p *Publisher) Close() error {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.queue)
	}
	p.mu.Unlock()

	t := time.NewTimer(p.closeWait)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	// Abort the retry in progress; the sender then drops the rest.
	p.stop()
	<-p.done
	return fmt.Errorf("close events publisher for %s: %d events not delivered within %s", p.address, p.aborted, p.closeWait)
}

// run is the only sender: one event at a time, in queue order.
func (p *Publisher) run() {
	defer close(p.done)
	defer func() {
		if p.client != nil {
			p.client.Close()
		}
	}()
	for env := range p.queue {
		if p.ctx.Err() != nil {
			// Close gave up waiting: drop what is left, counting it.
			p.aborted++
			continue
		}
		if err := p.deliver(env); err != nil {
			if p.ctx.Err() != nil {
				p.aborted++
			}
			p.log.Error("event dropped", "topic", env.Topic, "namespace", env.Namespace, "error", err)
		}
	}
}

// deliver sends one envelope, retrying with exponential backoff and a fresh
// connection after each failure, up to p.attempts times.
func (p *Publisher) deliver(env *types.Envelope) error {
	delay := p.backoff
	var err error
	for i := 0; i < p.attempts; i++ {
		if i > 0 {
			p.log.Debug("retrying event", "topic", env.Topic, "attempt", i+1, "after", delay, "error", err)
			select {
			case <-time.After(delay):
			case <-p.ctx.Done():
				return fmt.Errorf("forward %s to %s: %w (publisher closing)", env.Topic, p.address, err)
			}
			delay = min(2*delay, p.maxBackoff)
		}
		if err = p.forward(env); err == nil {
			return nil
		}
		// Any failure may have left the connection unusable (containerd
		// restarted, socket replaced): reconnect on the next attempt.
		if p.client != nil {
			p.client.Close()
			p.client = nil
		}
	}
	return fmt.Errorf("forward %s to %s: gave up after %d attempts: %w", env.Topic, p.address, p.attempts, err)
}

func (p *Publisher) forward(env *types.Envelope) error {
	if p.client == nil {
		d := net.Dialer{Timeout: dialTimeout}
		conn, err := d.DialContext(p.ctx, "unix", p.address)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		p.client = ttrpc.NewClient(conn)
	}
	ctx := ttrpc.WithMetadata(p.ctx, ttrpc.MD{namespaceHeader: []string{env.Namespace}})
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	_, err := eventsapi.NewEventsClient(p.client).Forward(ctx, &eventsapi.ForwardRequest{Envelope: env})
	return err
}
