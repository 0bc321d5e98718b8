package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/podbox/podbox/bench/report"
)

// playManifest is the pod of the play phase: three containers of the
// busybox image the peer runs, each a sleep, nothing else.
const playManifest = `apiVersion: v1
kind: Pod
metadata:
  name: %s
spec:
  restartPolicy: Never
  containers:
  - {name: a, image: %[2]s, imagePullPolicy: Never, command: ["sleep", "3600"]}
  - {name: b, image: %[2]s, imagePullPolicy: Never, command: ["sleep", "3600"]}
  - {name: c, image: %[2]s, imagePullPolicy: Never, command: ["sleep", "3600"]}
`

// playContainers is how many containers the play phase's pod has.
const playContainers = 3

// play measures issue #15's figure, interleaved: `podbox play` of a pod of
// three containers until it returns (every container started), next to
// what a kubelet asks of containerd for the same pod: `crictl runp`, then
// `crictl create` + `crictl start` of each container. Both teardowns are
// untimed.
func (b *bench) play(ctx context.Context) (err error) {
	unload, err := b.loadImage(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, unload()) }()
	dir, err := os.MkdirTemp("", "podbox-bench-play-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Fewer rounds than the other phases: one round starts eight
	// processes per subject.
	runs := min(b.cfg.runs, 20)
	play := samples{}
	for i := -b.cfg.warmup; i < runs; i++ {
		for _, w := range rotated(i+b.cfg.warmup, report.Podbox, report.Peer) {
			var d time.Duration
			var err error
			switch w {
			case report.Podbox:
				d, err = b.playPodbox(ctx, dir, i+b.cfg.warmup)
			case report.Peer:
				d, err = b.playPeer(ctx)
			}
			if err != nil {
				return err
			}
			if i >= 0 {
				play[w] = append(play[w], d)
			}
		}
	}
	b.addFigure(report.FigPlay, fmt.Sprintf("a pod of %d containers: podbox play / crictl runp + %d × (crictl create + start)", playContainers, playContainers), play)
	return nil
}

func (b *bench) playPodbox(ctx context.Context, dir string, round int) (time.Duration, error) {
	f := filepath.Join(dir, fmt.Sprintf("pod-%d.yaml", round))
	if err := os.WriteFile(f, fmt.Appendf(nil, playManifest, fmt.Sprintf("bench-play-%d", round), imageRef), 0o644); err != nil {
		return 0, err
	}
	_, d, err := b.pb.Cmd(ctx, "play", f)
	if err != nil {
		return d, err
	}
	_, _, err = b.pb.Cmd(ctx, "play", "--down", f)
	return d, err
}

func (b *bench) playPeer(ctx context.Context) (time.Duration, error) {
	pod, total, err := b.cri.RunPod(ctx)
	if err != nil {
		return total, err
	}
	for range playContainers {
		_, d, err := b.cri.StartContainer(ctx, pod, "/bin/sleep", "3600")
		total += d
		if err != nil {
			return total, errors.Join(err, b.removePeerPod(ctx, pod))
		}
	}
	return total, b.removePeerPod(ctx, pod)
}

func (b *bench) removePeerPod(ctx context.Context, pod string) error {
	_, err := b.cri.RemovePod(ctx, pod)
	return err
}
