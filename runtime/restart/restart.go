// Package restart owns a container's restart policy as `podbox run
// --restart` asks for it: its spelling, in the flag and in the spec
// annotation that carries it to the shim; whether an exit is restarted; and
// the back-off before the restart (Kubernetes' CrashLoopBackOff).
//
// It only decides. It never runs, times or signals a process: the shim does
// that with what it decides, and only for containers that carry the
// annotation (never for containerd's CRI, whose kubelet restarts its own).
package restart

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Annotation is the spec annotation that carries a container's policy to
// the shim, in Policy.String's spelling ("on-failure:3").
const Annotation = "io.podbox.restart"

// Mode is when a container is restarted.
type Mode string

const (
	// No: an exit is final (the default).
	No Mode = "no"
	// OnFailure: an exit with a non-zero status is restarted, up to
	// Policy.MaxRestarts times.
	OnFailure Mode = "on-failure"
	// Always: every exit is restarted, until the container is stopped,
	// killed or removed by its user.
	Always Mode = "always"
)

// Policy is a container's restart policy.
type Policy struct {
	Mode Mode
	// MaxRestarts bounds OnFailure's restarts over the container's life; 0
	// means no bound.
	MaxRestarts int
}

// errSpelling is what every misspelt policy is told.
var errSpelling = errors.New("want no, on-failure[:N] or always")

// Parse reads a policy as the flag and the annotation spell it: "no",
// "on-failure", "on-failure:N" (N ≥ 1) or "always"; "" is "no". Its errors
// do not repeat s: the caller names where s came from.
func Parse(s string) (Policy, error) {
	mode, count, hasCount := strings.Cut(s, ":")
	switch Mode(mode) {
	case "", No, Always:
		if hasCount {
			return Policy{}, fmt.Errorf("only on-failure takes a count (%s)", errSpelling)
		}
		if mode == "" {
			return Policy{Mode: No}, nil
		}
		return Policy{Mode: Mode(mode)}, nil
	case OnFailure:
		if !hasCount {
			return Policy{Mode: OnFailure}, nil
		}
		n, err := strconv.Atoi(count)
		if err != nil || n < 1 {
			return Policy{}, fmt.Errorf("the count %q is not a whole number of at least 1 (leave :N out for no limit)", count)
		}
		return Policy{Mode: OnFailure, MaxRestarts: n}, nil
	}
	return Policy{}, errSpelling
}

// String spells p as Parse reads it.
func (p Policy) String() string {
	if p.Mode == "" {
		return string(No)
	}
	if p.Mode == OnFailure && p.MaxRestarts > 0 {
		return string(OnFailure) + ":" + strconv.Itoa(p.MaxRestarts)
	}
	return string(p.Mode)
}

// Restarts reports whether a run that exited with status is restarted,
// when the container was restarted restarts times before.
func (p Policy) Restarts(status, restarts int) bool {
	switch p.Mode {
	case Always:
		return true
	case OnFailure:
		return status != 0 && (p.MaxRestarts == 0 || restarts < p.MaxRestarts)
	}
	return false
}

// Backoff is the wait before each restart: Kubernetes' CrashLoopBackOff,
// which doubles from Base up to Cap and starts over after a run that
// lasted Reset.
type Backoff struct {
	Base, Cap time.Duration
	// Reset: a run that lasted at least this long was a success, and the
	// next restart waits Base again.
	Reset time.Duration
}

// DefaultBackoff is the kubelet's: 10 s doubling to 5 min, reset after 10
// min of running.
func DefaultBackoff() Backoff {
	return Backoff{Base: 10 * time.Second, Cap: 5 * time.Minute, Reset: 10 * time.Minute}
}

// Step is the back-off step of the next restart, after a run that lasted
// ran and was restart number step of the current series (0 before the
// first): a run of Reset or longer starts a new series.
func (b Backoff) Step(step int, ran time.Duration) int {
	if ran >= b.Reset {
		return 1
	}
	return step + 1
}

// Delay is the wait before the restart of step k (1 for the first of a
// series): Base × 2^(k-1), at most Cap.
func (b Backoff) Delay(k int) time.Duration {
	d := b.Base
	for i := 1; i < k && d < b.Cap; i++ {
		if d > b.Cap/2 {
			return b.Cap // and never overflows
		}
		d *= 2
	}
	return min(d, b.Cap)
}

// ParseBackoff reads "BASE[,CAP]" (Go durations, as in
// PODBOX_RESTART_BACKOFF) over the default back-off: a cap not given is
// the default one, or BASE if that is longer. Reset stays the default.
func ParseBackoff(s string) (Backoff, error) {
	b := DefaultBackoff()
	base, capText, hasCap := strings.Cut(s, ",")
	var err error
	if b.Base, err = time.ParseDuration(strings.TrimSpace(base)); err != nil || b.Base <= 0 {
		return Backoff{}, fmt.Errorf("restart back-off %q: base %q: want a positive duration such as 10s", s, base)
	}
	b.Cap = max(b.Cap, b.Base)
	if hasCap {
		if b.Cap, err = time.ParseDuration(strings.TrimSpace(capText)); err != nil || b.Cap < b.Base {
			return Backoff{}, fmt.Errorf("restart back-off %q: cap %q: want a duration no shorter than the base", s, capText)
		}
	}
	return b, nil
}
