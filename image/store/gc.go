package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"golang.org/x/sys/unix"
)

// UsedBy names a container that uses the image with the given ID, or
// returns "" if none does. The store does not know containers; the CLI
// answers from the sandbox records.
type UsedBy func(id string) string

// Users makes the UsedBy of a removal. It is called once, with the store's
// locks held, so that no run is between resolving an image and recording
// the container that uses it.
type Users func() (UsedBy, error)

// Report says what a Remove or a Prune did.
type Report struct {
	Untagged []string `json:"untagged"`
	Deleted  []string `json:"deleted"`
	// Layers and Blobs count the stored layers and documents that no image
	// needed any more and were removed; Temp the abandoned work directories.
	Layers int   `json:"layers"`
	Blobs  int   `json:"blobs"`
	Temp   int   `json:"temp"`
	Freed  int64 `json:"freedBytes"`
}

// Remove removes the images refs name, as `docker rmi` does: a name of an
// image that has other names is only untagged; otherwise the image is
// deleted with whatever only it used. An image a container uses is refused,
// unless force, which untags it and leaves it (dangling) until the container
// is gone and a prune takes it. Every ref is checked before anything
// changes.
func (s Store) Remove(refs []string, force bool, users Users) (Report, error) {
	var rep Report
	images, usedBy, unlock, err := s.exclusive(users)
	if err != nil {
		return rep, err
	}
	defer unlock()
	type target struct {
		img  *Image
		name string // the name to untag, "" to delete the image
	}
	var targets []target
	// The names of each image that earlier refs untag: a ref is only an
	// untag while its image keeps another name, whatever the refs before it
	// took, and the same name given twice is one untag.
	untagging := map[*Image][]string{}
	for _, ref := range refs {
		img, err := resolveIn(images, ref)
		if err != nil {
			return rep, err
		}
		t := target{img: img}
		if r, err := ParseReference(ref); err == nil && slices.Contains(img.Names, r.String()) &&
			(slices.Contains(untagging[img], r.String()) || len(img.Names)-len(untagging[img]) > 1) {
			t.name = r.String()
			if !slices.Contains(untagging[img], t.name) {
				untagging[img] = append(untagging[img], t.name)
			}
		} else if c := usedBy(img.ID); c != "" && !force {
			return rep, fmt.Errorf("image %q: in use by container %q (remove the container first, or use -f to untag it)", ref, c)
		}
		targets = append(targets, t)
	}
	for _, t := range targets {
		switch {
		case t.name != "":
			if slices.Contains(t.img.Names, t.name) {
				t.img.Names = slices.DeleteFunc(t.img.Names, func(n string) bool { return n == t.name })
				rep.Untagged = append(rep.Untagged, t.name)
			}
		case usedBy(t.img.ID) != "":
			rep.Untagged = append(rep.Untagged, t.img.Names...)
			t.img.Names = []string{}
		default:
			if i := slices.Index(images, t.img); i >= 0 {
				rep.Untagged = append(rep.Untagged, t.img.Names...)
				rep.Deleted = append(rep.Deleted, t.img.ID)
				images = slices.Delete(images, i, i+1)
			}
		}
	}
	if err := s.writeIndex(images); err != nil {
		return rep, err
	}
	return rep, s.collect(images, &rep)
}

// Prune deletes the images no container uses that have no name left (all:
// every image no container uses), then every layer and document no
// remaining image needs, and abandoned work directories.
func (s Store) Prune(all bool, users Users) (Report, error) {
	var rep Report
	images, usedBy, unlock, err := s.exclusive(users)
	if err != nil {
		return rep, err
	}
	defer unlock()
	kept := images[:0:0]
	for _, img := range images {
		if (all || len(img.Names) == 0) && usedBy(img.ID) == "" {
			rep.Untagged = append(rep.Untagged, img.Names...)
			rep.Deleted = append(rep.Deleted, img.ID)
			continue
		}
		kept = append(kept, img)
	}
	if len(rep.Deleted) > 0 {
		if err := s.writeIndex(kept); err != nil {
			return rep, err
		}
	}
	if rep.Temp, err = s.CleanTemp(); err != nil {
		return rep, err
	}
	return rep, s.collect(kept, &rep)
}

// exclusive takes both of the store's locks for a removal, waiting for
// every user (pulls, runs) to finish, and returns the index and the
// containers' use of it as they are under the locks.
func (s Store) exclusive(users Users) ([]*Image, UsedBy, func(), error) {
	release, err := s.lock("gc.lock", unix.LOCK_EX)
	if err != nil {
		return nil, nil, nil, err
	}
	unlock, err := s.lock("index.lock", unix.LOCK_EX)
	if err != nil {
		release()
		return nil, nil, nil, err
	}
	unlockAll := func() { unlock(); release() }
	images, err := s.Images()
	if err == nil {
		var usedBy UsedBy
		if usedBy, err = users(); err == nil {
			return images, usedBy, unlockAll, nil
		}
	}
	unlockAll()
	return nil, nil, nil, err
}

// collect removes the layers and documents that none of images needs. The
// caller holds gc.lock exclusively, so no pull is between committing a
// layer and listing its image.
func (s Store) collect(images []*Image, rep *Report) error {
	layers := map[string]bool{}
	blobs := map[string]bool{}
	for _, img := range images {
		blobs[hexOf(img.ID)], blobs[hexOf(img.Digest)] = true, true
		for _, l := range img.Layers {
			layers[hexOf(l)] = true
		}
	}
	var errs []error
	sweep := func(dir string, keep map[string]bool, n *int) {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
		for _, e := range entries {
			if keep[e.Name()] {
				continue
			}
			p := filepath.Join(dir, e.Name())
			size := diskUsage(p)
			if err := os.RemoveAll(p); err != nil {
				errs = append(errs, fmt.Errorf("image store %s: %w", s.Root, err))
				continue
			}
			*n++
			rep.Freed += size
		}
	}
	sweep(filepath.Join(s.Root, "layers"), layers, &rep.Layers)
	sweep(filepath.Join(s.Root, "blobs", "sha256"), blobs, &rep.Blobs)
	return errors.Join(errs...)
}

// diskUsage is the size of the files under p.
func diskUsage(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
