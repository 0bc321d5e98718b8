// Package store owns podbox's local image store: image documents
// (manifests, configs) by digest, every layer unpacked once for overlayfs
// and shared by all the images and containers that use it, the index of
// the images the node has, and the locks that keep a pull, a run, a remove
// and a prune from tripping over one another.
//
// It never talks to a registry, never reads an archive and never mounts
// anything: fetching is image/fetch's, applying a layer tar is
// image/unpack's, and the overlay mount of a container's root is the
// shim's. It links only the standard library and x/sys, because the CLI
// reads it on `podbox run --image`, and a create must not pay for package
// init it does not use.
//
// On disk, under Root:
//
//	images.json             the index: every image, with its names
//	blobs/sha256/HEX        manifests and configs, checked against HEX
//	layers/HEX/diff         a layer unpacked, HEX its diff ID (uncompressed digest)
//	layers/HEX/layer.json   what the layer was fetched as
//	tmp/NAME/               work in progress; owner.lock is held while it runs
//	gc.lock, index.lock     the locks
//	tmp.lock                keeps CleanTemp from a work directory not yet locked
//
// An image is listed only once everything it needs is in place: layers are
// unpacked in tmp/ and renamed into layers/ whole, and the index is written
// last, by rename. A crash or ^C leaves at most finished layers (a second
// pull reuses them) and tmp/ directories that nobody holds (the next pull or
// prune removes them); never an image that is listed but incomplete.
package store
