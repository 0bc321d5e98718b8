package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/podbox/podbox/bench/report"
)

// loadImage loads the bench's busybox image (imageRef) into podbox's store
// for a phase; unload removes it and its layers again.
func (b *bench) loadImage(ctx context.Context) (unload func() error, err error) {
	if _, _, err := b.pb.Cmd(ctx, "image", "load", "-q", "-i", b.imageTar); err != nil {
		return nil, err
	}
	return func() error {
		if _, _, err := b.pb.Cmd(ctx, "image", "rm", imageRef); err != nil {
			return err
		}
		_, _, err := b.pb.Cmd(ctx, "image", "prune")
		return err
	}, nil
}

// joinImage measures a container's start from an image in a ready sandbox:
// `podbox run -d --image` of the busybox image the peer runs, next to
// `podbox run -d --rootfs` of a directory of the same files and `crictl
// create` + `crictl start` of the image, interleaved.
func (b *bench) joinImage(ctx context.Context) (err error) {
	unload, err := b.loadImage(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, unload()) }()
	cmd := []string{"sleep", "3600"}
	sb, pod, done, err := b.sandboxAndPod(ctx)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, done()) }()
	who := []string{report.Podbox, report.PodboxRootfs, report.Peer}
	join := samples{}
	for i := -b.cfg.warmup; i < b.cfg.runs; i++ {
		for _, w := range rotated(i+b.cfg.warmup, who...) {
			var cid string
			var d time.Duration
			var err error
			switch w {
			case report.Podbox:
				cid, d, err = b.pb.Cmd(ctx, append([]string{"run", "-d", "--pull", "never", "--sandbox", sb, "--image", imageRef, "--"}, cmd...)...)
			case report.PodboxRootfs:
				cid, d, err = b.pb.Run(ctx, sb, b.rootfs, cmd...)
			case report.Peer:
				cid, d, err = b.cri.StartContainer(ctx, pod, append([]string{"/bin/" + cmd[0]}, cmd[1:]...)...)
			}
			if err == nil {
				if w == report.Peer {
					err = b.cri.RemoveContainer(ctx, cid)
				} else {
					err = b.pb.RemoveContainer(ctx, cid)
				}
			}
			if err != nil {
				return err
			}
			if i >= 0 {
				join[w] = append(join[w], d)
			}
		}
	}
	b.addFigure(report.FigJoinImage, "join from an image: podbox run -d --image / podbox run -d --rootfs / crictl create + start", join)
	return nil
}

// pull measures `podbox image pull` against `ctr images pull` (which
// unpacks too) of one 3-layer image from a registry on the node's
// loopback, interleaved; after each pull the image and its content are
// removed again, so that every pull fetches every byte.
func (b *bench) pull(ctx context.Context) error {
	host, stop, err := startRegistry()
	if err != nil {
		return err
	}
	defer stop()
	// Random bytes do not compress: the transfer is the image's size.
	img, err := randomImage(b.cfg.pullMiB)
	if err != nil {
		return err
	}
	ref := host + "/bench/pull:1"
	nref, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		return err
	}
	if err := remote.Write(nref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	const ns = "bench-pull"
	pull := samples{}
	for i := -b.cfg.warmup; i < b.cfg.runs; i++ {
		order := []string{report.Podbox, report.Peer}
		if (i+b.cfg.warmup)%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, w := range order {
			var d time.Duration
			var err error
			switch w {
			case report.Podbox:
				if _, d, err = b.pb.Cmd(ctx, "image", "pull", "-q", ref); err == nil {
					if _, _, err = b.pb.Cmd(ctx, "image", "rm", ref); err == nil {
						_, _, err = b.pb.Cmd(ctx, "image", "prune")
					}
				}
			case report.Peer:
				if _, d, err = b.cri.Ctr(ctx, "-n", ns, "images", "pull", "--plain-http", ref); err == nil {
					_, _, err = b.cri.Ctr(ctx, "-n", ns, "images", "rm", "--sync", ref)
				}
			}
			if err != nil {
				return err
			}
			if i >= 0 {
				pull[w] = append(pull[w], d)
			}
		}
	}
	total := 0
	for _, m := range b.cfg.pullMiB {
		total += m
	}
	b.addFigure(report.FigPull, fmt.Sprintf("pull of a %d-layer image (%d MiB) from a loopback registry, unpacked: podbox image pull / ctr images pull", len(b.cfg.pullMiB), total), pull)
	return nil
}

// startRegistry serves go-containerregistry's in-process registry on the
// loopback of the node the bench runs in, in memory.
func startRegistry() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, fmt.Errorf("registry: %w", err)
	}
	srv := &http.Server{Handler: registry.New(registry.Logger(log.New(io.Discard, "", 0)))}
	go srv.Serve(ln)
	return ln.Addr().String(), func() { srv.Close() }, nil
}

// randomImage is a linux/amd64 image with one layer per size (MiB), each
// one file of random bytes, gzip'd.
func randomImage(mib []int) (v1.Image, error) {
	img := empty.Image
	for i, m := range mib {
		size := int64(m) << 20
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		if err := tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/%d.bin", i), Mode: 0o644, Size: size, ModTime: time.Unix(0, 0)}); err != nil {
			return nil, err
		}
		if _, err := io.CopyN(tw, rand.Reader, size); err != nil {
			return nil, err
		}
		if err := tw.Close(); err != nil {
			return nil, err
		}
		data := buf.Bytes()
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
		if err != nil {
			return nil, err
		}
		if img, err = mutate.AppendLayers(img, l); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Cmd = []string{"/bin/sh"}
	return mutate.ConfigFile(img, cf)
}
