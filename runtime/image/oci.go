package image

// The OCI image-spec v1.1 documents an archive holds, as far as podbox
// writes them. They are spelled out here rather than taken from
// github.com/opencontainers/image-spec, whose types pull in go-digest, and
// go-digest compiles its regular expressions at package initialisation:
// 92 KB of heap and their page faults at every start of the CLI (which
// links this package for `podbox pause-image`), for the few fields that an
// image of one static binary has. Field order and JSON names follow
// image-spec's Go types, so the documents (and their digests) are
// byte-for-byte what those types encode; the tests decode them with
// image-spec's own types.

const (
	mediaTypeIndex     = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest  = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig    = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
	// annotationRefName is the OCI annotation naming an image in an index.
	annotationRefName = "org.opencontainers.image.ref.name"
)

// ociLayout is the oci-layout file.
type ociLayout struct {
	Version string `json:"imageLayoutVersion"`
}

type ociPlatform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

type ociDescriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *ociPlatform      `json:"platform,omitempty"`
}

type ociIndex struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType,omitempty"`
	Manifests     []ociDescriptor `json:"manifests"`
}

type ociManifest struct {
	SchemaVersion int             `json:"schemaVersion"`
	MediaType     string          `json:"mediaType,omitempty"`
	Config        ociDescriptor   `json:"config"`
	Layers        []ociDescriptor `json:"layers"`
}

// ociImage is the image config; image-spec's Image embeds the platform, so
// its fields come first.
type ociImage struct {
	Architecture string         `json:"architecture"`
	OS           string         `json:"os"`
	Config       ociImageConfig `json:"config"`
	RootFS       ociRootFS      `json:"rootfs"`
}

type ociImageConfig struct {
	User       string            `json:"User,omitempty"`
	Entrypoint []string          `json:"Entrypoint,omitempty"`
	Labels     map[string]string `json:"Labels,omitempty"`
}

type ociRootFS struct {
	Type    string   `json:"type"`
	DiffIDs []string `json:"diff_ids"`
}
