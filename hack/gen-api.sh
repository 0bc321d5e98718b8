#!/usr/bin/env bash
# gen-api.sh — regenerates (`make generate`) the Go code of the containerd
# APIs that podbox keeps its own copy of, from the .proto files in the module
# cache at the containerd/api version go.mod requires:
#   - runtime/sandboxapi from sandbox.proto: messages (protoc-gen-go) and
#     ttrpc stubs (protoc-gen-go-ttrpc) only, never the grpc stubs that would
#     link google.golang.org/grpc into the shim and the CLI (see its doc.go);
#   - runtime/taskevents from events/task.proto: the task event messages only,
#     not the package of every containerd event (see its doc.go). The plugins are built from the versions go.mod requires and protoc
# is Debian 12's (apt-get install protobuf-compiler libprotobuf-dev, the
# latter for the well-known types under /usr/include), so that regenerating
# reproduces the committed files byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."

command -v protoc >/dev/null || { echo "gen-api: protoc missing: apt-get install protobuf-compiler" >&2; exit 1; }
[ -f /usr/include/google/protobuf/any.proto ] || { echo "gen-api: google/protobuf/any.proto missing: apt-get install libprotobuf-dev" >&2; exit 1; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The plugins at go.mod's versions of google.golang.org/protobuf and
# github.com/containerd/ttrpc (their versions end up in the file headers).
go build -o "$tmp/bin/protoc-gen-go" google.golang.org/protobuf/cmd/protoc-gen-go
go build -o "$tmp/bin/protoc-gen-go-ttrpc" github.com/containerd/ttrpc/cmd/protoc-gen-go-ttrpc

# The .proto files import their siblings by their Go import path; an include dir
# whose github.com/containerd/containerd/api points into the module cache
# resolves them without copying any .proto into this repository.
api=$(go list -m -f '{{.Dir}}' github.com/containerd/containerd/api)
mkdir -p "$tmp/include/github.com/containerd/containerd"
ln -s "$api" "$tmp/include/github.com/containerd/containerd/api"

proto=github.com/containerd/containerd/api/runtime/sandbox/v1/sandbox.proto
pkg=github.com/podbox/podbox/runtime/sandboxapi
# Only sandbox.proto maps to our package; the types it imports stay
# containerd's Go packages, shared with the Task API. prefix=TTRPC names the
# stubs as containerd's own do (TTRPCSandboxService, NewTTRPCSandboxClient).
m="M$proto=$pkg;sandboxapi"
PATH="$tmp/bin:$PATH" protoc -I "$tmp/include" -I /usr/include \
	--go_out=. --go_opt=module=github.com/podbox/podbox --go_opt="$m" \
	--go-ttrpc_out=. --go-ttrpc_opt=module=github.com/podbox/podbox --go-ttrpc_opt="$m" --go-ttrpc_opt=prefix=TTRPC \
	"$proto"

# The task events, alone, into runtime/taskevents; the types task.proto
# imports (Mount, the fieldpath option) stay containerd's Go packages.
proto=github.com/containerd/containerd/api/events/task.proto
pkg=github.com/podbox/podbox/runtime/taskevents
PATH="$tmp/bin:$PATH" protoc -I "$tmp/include" -I /usr/include \
	--go_out=. --go_opt=module=github.com/podbox/podbox --go_opt="M$proto=$pkg;taskevents" \
	"$proto"
# containerd's own generator names the fields ContainerID, ExecID, ID and IO
# (its go-fix-acronym step); so do we, in Go identifiers only (they start
# with a capital letter), never in the descriptor or the struct tags, whose
# names are the .proto's.
sed -E -i 's/\b([A-Z][A-Za-z0-9_]*)?(Id|Io)\b/\1\U\2/g' runtime/taskevents/task.pb.go
