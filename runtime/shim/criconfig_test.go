package shim

import (
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/podbox/podbox/netsetup/nat"
	"github.com/podbox/podbox/netsetup/resolvconf"
	sbapi "github.com/podbox/podbox/runtime/sandboxapi"
	"github.com/podbox/podbox/sandbox"
)

// criWebPod is a PodSandboxConfig as k8s.io/cri-api v0.32.3 (the version
// containerd 2.1 builds with) marshals it: metadata web/default/web-uid
// attempt 1, hostname web, a log directory, dns_config {servers 10.96.0.10
// and fd00::a, searches default.svc.cluster.local and svc.cluster.local,
// options ndots:5 and edns0}, port_mappings {TCP 80 on host port 18080},
// {UDP 53 on 10.100.0.2:5353}, {TCP 8443 without a host port}, a label, an
// annotation, and linux {cgroup_parent /kubepods, network namespace POD}.
const criWebPod = "0a190a0377656212077765622d7569641a0764656661756c74200112037765621a112f7661722f6c6f672f706f64732f776562" +
	"22530a0a31302e39362e302e31300a07666430303a3a61121964656661756c742e7376632e636c75737465722e6c6f63616c12117376632e" +
	"636c75737465722e6c6f63616c1a076e646f74733a351a0565646e73302a06105018a08d012a130801103518e929220a31302e3130302e30" +
	"2e322a0310fb41320a0a0361707012037765623a060a0161120162420f0a092f6b756265706f647312020a00"

// criSCTPPod is PodSandboxConfig{port_mappings: [{SCTP 9 on host port 9}]},
// marshaled by the same cri-api.
const criSCTPPod = "2a06080210091809"

// criTunedPod is PodSandboxConfig{metadata tuned/default/tuned-uid,
// hostname tuned, linux {cgroup_parent /kubepods, sysctls
// {kernel.shm_rmid_forced: 1, net.ipv4.ip_local_port_range: 20000 30000},
// security_context {namespace_options {}}}}, marshaled by the same cri-api.
const criTunedPod = "0a1b0a0574756e6564120974756e65642d7569641a0764656661756c74120574756e656442590a092f6b756265706f6473" +
	"12020a001a2b0a1c6e65742e697076342e69705f6c6f63616c5f706f72745f72616e6765120b32303030302033303030301a1b0a166b65" +
	"726e656c2e73686d5f726d69645f666f72636564120131"

var tunedSysctls = map[string]string{"kernel.shm_rmid_forced": "1", "net.ipv4.ip_local_port_range": "20000 30000"}

// sysctlEntry encodes one entry of LinuxPodSandboxConfig.sysctls.
func sysctlEntry(k, v string) []byte {
	return bytesField(fieldLinuxSysctls, stringField(fieldMapKey, k), stringField(fieldMapValue, v))
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Helpers that encode fields as protoc's code does.
func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func bytesField(num protowire.Number, fields ...[]byte) []byte {
	var v []byte
	for _, f := range fields {
		v = append(v, f...)
	}
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), v)
}

func stringField(num protowire.Number, s string) []byte { return bytesField(num, []byte(s)) }

// portMapping encodes a PortMapping; int32 fields go as sign-extended
// varints, as protobuf encodes negative ones.
func portMapping(proto uint64, containerPort, hostPort int32, hostIP string) []byte {
	fields := [][]byte{varintField(fieldPortProtocol, proto),
		varintField(fieldPortContainerPort, uint64(int64(containerPort))),
		varintField(fieldPortHostPort, uint64(int64(hostPort)))}
	if hostIP != "" {
		fields = append(fields, stringField(fieldPortHostIP, hostIP))
	}
	return bytesField(fieldPodPortMappings, fields...)
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

var webPod = criPod{
	Hostname: "web",
	Ports: []nat.Mapping{
		{HostPort: 18080, Port: 80, Protocol: "tcp"},
		{HostIP: netip.MustParseAddr("10.100.0.2"), HostPort: 5353, Port: 53, Protocol: "udp"},
	},
	DNS: &resolvconf.Config{
		Servers:  []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00::a")},
		Searches: []string{"default.svc.cluster.local", "svc.cluster.local"},
		Options:  []string{"ndots:5", "edns0"},
		Complete: true,
	},
}

func TestDecodeCRIPod(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want criPod
		err  string
	}{
		{name: "cri-api's marshaling", b: unhex(t, criWebPod), want: webPod},
		{name: "empty config", b: nil},
		{name: "empty dns_config: an empty resolv.conf", b: bytesField(fieldPodDNSConfig),
			want: criPod{DNS: &resolvconf.Config{Complete: true}}},
		{name: "dns_config given twice merges", b: cat(bytesField(fieldPodDNSConfig, stringField(fieldDNSServers, "10.0.0.1")),
			bytesField(fieldPodDNSConfig, stringField(fieldDNSServers, "10.0.0.2"), stringField(fieldDNSSearches, "a.example"))),
			want: criPod{DNS: &resolvconf.Config{Servers: []netip.Addr{netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2")},
				Searches: []string{"a.example"}, Complete: true}}},
		{name: "no or a negative host port: not published", b: cat(portMapping(0, 80, 0, ""), portMapping(1, 53, -1, ""))},
		{name: "host IP 0.0.0.0: every address", b: portMapping(0, 80, 8080, "0.0.0.0"),
			want: criPod{Ports: []nat.Mapping{{HostPort: 8080, Port: 80, Protocol: "tcp"}}}},
		{name: "one host port per protocol", b: cat(portMapping(0, 80, 8080, ""), portMapping(1, 80, 8080, "")),
			want: criPod{Ports: []nat.Mapping{{HostPort: 8080, Port: 80, Protocol: "tcp"}, {HostPort: 8080, Port: 80, Protocol: "udp"}}}},
		{name: "sctp", b: unhex(t, criSCTPPod),
			err: "PodSandboxConfig: port_mappings[0]: host port 9 to container port 9: protocol SCTP: podbox publishes TCP and UDP ports only"},
		{name: "unknown protocol", b: portMapping(7, 80, 8080, ""), err: "port_mappings[0]: host port 8080 to container port 80: unknown protocol 7"},
		{name: "IPv6 host IP", b: portMapping(0, 80, 8080, "fd00::1"), err: `host IP "fd00::1": podbox publishes on IPv4 addresses only`},
		{name: "bad host IP", b: portMapping(0, 80, 8080, "node"), err: `host IP "node"`},
		{name: "no container port", b: portMapping(0, 0, 8080, ""), err: "host port 8080 to container port 0: want ports from 1 to 65535"},
		{name: "host port out of range", b: portMapping(0, 80, 70000, ""), err: "want ports from 1 to 65535"},
		{name: "one host port twice", b: cat(portMapping(0, 80, 8080, ""), portMapping(0, 81, 8080, "")),
			err: "port_mappings[1]: host port 8080/tcp is mapped twice"},
		{name: "server not an address", b: bytesField(fieldPodDNSConfig, stringField(fieldDNSServers, "dns.example")),
			err: `PodSandboxConfig: dns_config: server "dns.example": not an IP address`},
		{name: "search resolv.conf cannot hold", b: bytesField(fieldPodDNSConfig, stringField(fieldDNSSearches, "a b")),
			err: `PodSandboxConfig: dns_config: --dns-search "a b": not a domain name`},
		{name: "port_mappings not a message", b: varintField(fieldPodPortMappings, 1),
			err: "port_mappings: field 5 has wire type 0, want 2: not the message of k8s.io/cri-api"},
		{name: "truncated", b: unhex(t, criWebPod)[:40], err: "PodSandboxConfig: field 3: unexpected EOF"},
		{name: "sysctls, cri-api's marshaling", b: unhex(t, criTunedPod), want: criPod{Hostname: "tuned", Sysctls: tunedSysctls}},
		{name: "namespaces of the node's: network (with it UTS), PID, IPC", b: bytesField(fieldPodLinux, bytesField(fieldLinuxSecurityContext,
			bytesField(fieldSecurityNamespaces, varintField(fieldNamespaceNetwork, 2), varintField(fieldNamespacePID, 2), varintField(fieldNamespaceIPC, 2)))),
			want: criPod{Host: sandbox.HostNamespaces{UTS: true, PID: true, IPC: true}}},
		{name: "namespaces POD and CONTAINER are the pod's", b: bytesField(fieldPodLinux, bytesField(fieldLinuxSecurityContext,
			bytesField(fieldSecurityNamespaces, varintField(fieldNamespaceNetwork, 0), varintField(fieldNamespacePID, 1), varintField(fieldNamespaceIPC, 0))))},
		{name: "a namespace mode not a varint", b: bytesField(fieldPodLinux, bytesField(fieldLinuxSecurityContext,
			bytesField(fieldSecurityNamespaces, stringField(fieldNamespacePID, "NODE")))),
			err: "PodSandboxConfig: linux: security_context: namespace_options: field 2 has wire type 2, want 0"},
		{name: "sysctls: a later entry wins, an empty value is a value", b: bytesField(fieldPodLinux,
			sysctlEntry("fs.mqueue.msg_max", "10"), sysctlEntry("fs.mqueue.msg_max", "100"), sysctlEntry("kernel.domainname", "")),
			want: criPod{Sysctls: map[string]string{"fs.mqueue.msg_max": "100", "kernel.domainname": ""}}},
		{name: "sysctls not a map", b: bytesField(fieldPodLinux, varintField(fieldLinuxSysctls, 1)),
			err: "PodSandboxConfig: linux: sysctls: field 3 has wire type 0, want 2"},
	} {
		got, err := decodeCRIPod(tc.b)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error containing %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %+v (DNS %+v), %v; want %+v (DNS %+v)", tc.name, got, got.DNS, err, tc.want, tc.want.DNS)
		}
	}
}

// optionsFrom takes a CRI pod's ports (for a pod with its own network
// namespace) and DNS settings from CreateSandbox's options, by type URL.
func TestOptionsFromCRIPod(t *testing.T) {
	const id = "0123456789abcdef"
	req := func(typeURL, netns string, value []byte, ann map[string]string) *sbapi.CreateSandboxRequest {
		return &sbapi.CreateSandboxRequest{SandboxId: id, NetnsPath: netns, Annotations: ann,
			Options: &anypb.Any{TypeUrl: typeURL, Value: value}}
	}
	web := unhex(t, criWebPod)
	for _, url := range []string{"runtime.v1.PodSandboxConfig", "type.googleapis.com/runtime.v1.PodSandboxConfig"} {
		o, err := optionsFrom(req(url, "/run/netns/cni-1", web, nil))
		if err != nil || o.Network != sandbox.NetworkExternal || !reflect.DeepEqual(o.Ports, webPod.Ports) || !reflect.DeepEqual(o.DNS, *webPod.DNS) {
			t.Errorf("type URL %s: %+v, %v", url, o, err)
		}
	}
	// On the node's network: the DNS settings, no ports.
	if o, err := optionsFrom(req(criPodSandboxConfig, "", web, nil)); err != nil || len(o.Ports) != 0 || !o.DNS.Complete {
		t.Errorf("pod without a netns: %+v, %v", o, err)
	}
	// Sysctls from the config, or from annotations (the CLI's).
	if o, err := optionsFrom(req(criPodSandboxConfig, "/run/netns/cni-1", unhex(t, criTunedPod), nil)); err != nil || !reflect.DeepEqual(o.Sysctls, tunedSysctls) {
		t.Errorf("pod with sysctls: %v, %v", o.Sysctls, err)
	}
	if o, err := optionsFrom(&sbapi.CreateSandboxRequest{SandboxId: id, Annotations: map[string]string{
		annSysctlPrefix + "fs.mqueue.msg_max": "100", annLabelPrefix + "a": "b"}}); err != nil ||
		!reflect.DeepEqual(o.Sysctls, map[string]string{"fs.mqueue.msg_max": "100"}) {
		t.Errorf("sysctl annotations: %v, %v", o.Sysctls, err)
	}
	if o, err := optionsFrom(&sbapi.CreateSandboxRequest{SandboxId: id}); err != nil || o.Sysctls != nil {
		t.Errorf("no sysctls: %v, %v", o.Sysctls, err)
	}
	// Options of another type are not read.
	if o, err := optionsFrom(req("runtime.v1.ContainerConfig", "/run/netns/cni-1", []byte{0xff}, nil)); err != nil || len(o.Ports) != 0 || !o.DNS.IsZero() {
		t.Errorf("other options: %+v, %v", o, err)
	}
	for _, tc := range []struct {
		name  string
		value []byte
		ann   map[string]string
		err   string
	}{
		{"ports twice", web, map[string]string{annPorts: "8080:80"}, `sandbox "` + id + `": ports both in io.podbox.ports and in the PodSandboxConfig`},
		{"DNS twice", web, map[string]string{annDNSSearches: "a.example"}, "DNS settings both in io.podbox.dns.* and in the PodSandboxConfig"},
		{"malformed", unhex(t, criSCTPPod), nil, `sandbox "` + id + `": PodSandboxConfig: port_mappings[0]`},
		{"sysctls twice", unhex(t, criTunedPod), map[string]string{annSysctlPrefix + "kernel.sem": "1 2 3 4"},
			"sysctls both in io.podbox.sysctl.* and in the PodSandboxConfig"},
		{"node sysctl", bytesField(fieldPodLinux, sysctlEntry("vm.swappiness", "1")), nil,
			`sandbox "` + id + `": sysctl "vm.swappiness" is not in a namespace of the sandbox`},
	} {
		_, err := optionsFrom(req(criPodSandboxConfig, "/run/netns/cni-1", tc.value, tc.ann))
		if !errors.Is(err, errInvalid) || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("%s: %v, want invalid argument containing %q", tc.name, err, tc.err)
		}
	}
}

// The sysctls of CRI's sandbox container spec (containerd 1.6, 2.x's
// podsandbox) are the sandbox's, unless one is of a namespace the pod
// shares with the node.
func TestCRISysctls(t *testing.T) {
	own := []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/run/netns/cni-1"}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}}
	hostIPC := []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/run/netns/cni-1"}, {Type: specs.UTSNamespace}}
	for _, tc := range []struct {
		name string
		nss  []specs.LinuxNamespace
		in   map[string]string
		err  string
	}{
		{"none", own, nil, ""},
		{"pod's namespaces", own, tunedSysctls, ""},
		{"hostIPC, network sysctl", hostIPC, map[string]string{"net.ipv4.ip_local_port_range": "20000 30000"}, ""},
		{"hostIPC, IPC sysctl", hostIPC, map[string]string{"fs.mqueue.msg_max": "100"}, `sysctl "fs.mqueue.msg_max": the pod shares the node's IPC namespace`},
		{"node sysctl", own, map[string]string{"kernel.panic": "1"}, `sysctl "kernel.panic" is not in a namespace of the sandbox`},
	} {
		var o sandbox.Options
		err := criSysctls(&sandboxSpec{Linux: &sandboxLinux{Namespaces: tc.nss, Sysctl: tc.in}}, &o)
		switch {
		case tc.err == "" && (err != nil || !reflect.DeepEqual(o.Sysctls, tc.in)):
			t.Errorf("%s: %v, %v; want %v", tc.name, o.Sysctls, err, tc.in)
		case tc.err != "" && (!errors.Is(err, errInvalid) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: %v; want invalid argument containing %q", tc.name, err, tc.err)
		}
	}
}
