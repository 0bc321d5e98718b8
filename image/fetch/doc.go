// Package fetch brings images into the image store (image/store): from a
// registry that speaks the OCI distribution API (Pull) and from archives,
// `docker save` tars and OCI image layouts (Load). It picks the platform,
// authenticates, verifies every blob's digest and size, and unpacks each
// layer (image/unpack) once, while it downloads.
//
// It never runs a container and never mounts. It links
// go-containerregistry, and with it net/http and crypto, whose package init
// a `podbox sandbox create` must not pay: only the podbox-image binary
// links this package, and the CLI runs that binary for pull and load.
package fetch
