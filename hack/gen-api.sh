#!/usr/bin/env bash
# gen-api.sh — regenerates (`make generate`) podbox's own Go code for the
# containerd APIs that the shim and the CLI speak, from the .proto files in
# the module cache at the containerd/api version go.mod requires:
#
#   runtime/apitypes   types/{mount,metrics,platform,event}.proto
#   runtime/tasktypes  types/task/task.proto
#   runtime/taskapi    runtime/task/v2/shim.proto (Task API, ttrpc stubs)
#   runtime/sandboxapi runtime/sandbox/v1/sandbox.proto (Sandbox API, ttrpc stubs)
#   runtime/eventsapi  services/ttrpc/events/v1/events.proto (ttrpc stubs)
#   runtime/taskevents events/task.proto
#
# Messages (protoc-gen-go) and ttrpc stubs (protoc-gen-go-ttrpc) only, never
# grpc stubs, and none of containerd's Go packages: see runtime/apitypes's
# doc.go for why. The plugins are built from the versions go.mod requires and
# protoc is Debian 12's (apt-get install protobuf-compiler libprotobuf-dev,
# the latter for the well-known types under /usr/include), so that
# regenerating reproduces the committed files byte for byte.
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

# The .proto files import their siblings by their Go import path; an include
# dir whose github.com/containerd/containerd/api points into the module cache
# resolves them without copying any .proto into this repository.
api=$(go list -m -f '{{.Dir}}' github.com/containerd/containerd/api)
cd_api=github.com/containerd/containerd/api
mkdir -p "$tmp/include/github.com/containerd/containerd"
ln -s "$api" "$tmp/include/$cd_api"

# event.proto and events/task.proto carry containerd's fieldpath option, a
# descriptor.proto extension that would link protobuf's descriptorpb (48 KB
# of heap at every start) for containerd's own event filtering, which the
# shim never does. Copies without it, in an include dir searched first,
# shadow the originals; the messages and their wire format are unchanged.
for f in types/event.proto events/task.proto; do
	mkdir -p "$(dirname "$tmp/overlay/$cd_api/$f")"
	grep -v 'fieldpath' "$api/$f" >"$tmp/overlay/$cd_api/$f"
done

mod=github.com/podbox/podbox
# Every file maps to our packages; nothing refers to containerd's Go code.
maps=(
	"M$cd_api/types/mount.proto=$mod/runtime/apitypes;apitypes"
	"M$cd_api/types/metrics.proto=$mod/runtime/apitypes;apitypes"
	"M$cd_api/types/platform.proto=$mod/runtime/apitypes;apitypes"
	"M$cd_api/types/event.proto=$mod/runtime/apitypes;apitypes"
	"M$cd_api/types/task/task.proto=$mod/runtime/tasktypes;tasktypes"
	"M$cd_api/runtime/task/v2/shim.proto=$mod/runtime/taskapi;taskapi"
	"M$cd_api/runtime/sandbox/v1/sandbox.proto=$mod/runtime/sandboxapi;sandboxapi"
	"M$cd_api/services/ttrpc/events/v1/events.proto=$mod/runtime/eventsapi;eventsapi"
	"M$cd_api/events/task.proto=$mod/runtime/taskevents;taskevents"
)
goopts=(--go_out=. --go_opt=module=$mod)
ttrpcopts=(--go-ttrpc_out=. --go-ttrpc_opt=module=$mod)
for m in "${maps[@]}"; do
	goopts+=(--go_opt="$m")
	ttrpcopts+=(--go-ttrpc_opt="$m")
done
protoc_() { PATH="$tmp/bin:$PATH" protoc -I "$tmp/overlay" -I "$tmp/include" -I /usr/include "$@"; }

protoc_ "${goopts[@]}" \
	"$cd_api/types/mount.proto" "$cd_api/types/metrics.proto" "$cd_api/types/platform.proto" "$cd_api/types/event.proto"
protoc_ "${goopts[@]}" "$cd_api/types/task/task.proto"
protoc_ "${goopts[@]}" "${ttrpcopts[@]}" "$cd_api/runtime/task/v2/shim.proto"
protoc_ "${goopts[@]}" "${ttrpcopts[@]}" "$cd_api/services/ttrpc/events/v1/events.proto"
protoc_ "${goopts[@]}" "$cd_api/events/task.proto"
# prefix=TTRPC names the Sandbox stubs as containerd's own do
# (TTRPCSandboxService, NewTTRPCSandboxClient).
protoc_ "${goopts[@]}" "${ttrpcopts[@]}" --go-ttrpc_opt=prefix=TTRPC "$cd_api/runtime/sandbox/v1/sandbox.proto"

# containerd's own generator names fields and getters ContainerID, ExecID, ID
# and IO (its go-fix-acronym step); so do we, in Go identifiers only (they
# start with a capital letter), never in the descriptors or the struct tags,
# whose names are the .proto's. runtime/sandboxapi predates this step and
# keeps protoc-gen-go's names (SandboxId), which its callers use.
for d in apitypes tasktypes taskapi eventsapi taskevents; do
	for f in runtime/$d/*.pb.go; do
		perl -pi -e 's/\b([A-Z][A-Za-z0-9_]*)\b/my $t = $1; $t =~ s!(Id|Io|Uuid|Os)$!uc $1!e; $t/ge' "$f"
	done
done
