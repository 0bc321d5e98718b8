package shim

import (
	"fmt"
	"net/netip"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/podbox/podbox/netsetup/nat"
	"github.com/podbox/podbox/netsetup/resolvconf"
	sbapi "github.com/podbox/podbox/runtime/sandboxapi"
	"github.com/podbox/podbox/sandbox"
)

// criPodSandboxConfig is the type of the options containerd's CRI sends with
// CreateSandbox when the shim is its sandboxer (containerd 2.x, sandboxer
// "shim"): the pod's runtime.v1.PodSandboxConfig, whose type URL typeurl
// writes as the bare message name.
const criPodSandboxConfig = "runtime.v1.PodSandboxConfig"

// isPodSandboxConfig reports whether an Any's type URL names CRI's
// PodSandboxConfig, bare or behind a prefix such as type.googleapis.com/.
func isPodSandboxConfig(typeURL string) bool {
	return typeURL == criPodSandboxConfig || strings.HasSuffix(typeURL, "/"+criPodSandboxConfig)
}

// Field numbers of the CRI messages podbox reads (k8s.io/cri-api's
// api.proto). Read by number with protowire rather than through the
// generated package: the shim's idle memory and start-up are part of every
// pod's cost, and cri-api's package brings gogo/protobuf and a large
// registry for two fields.
const (
	fieldPodHostname     = 2 // PodSandboxConfig.hostname
	fieldPodDNSConfig    = 4 // PodSandboxConfig.dns_config
	fieldPodPortMappings = 5 // PodSandboxConfig.port_mappings
	fieldPodLinux        = 8 // PodSandboxConfig.linux

	fieldLinuxSecurityContext = 2 // LinuxPodSandboxConfig.security_context
	fieldLinuxSysctls         = 3 // LinuxPodSandboxConfig.sysctls, a map<string, string>
	fieldSecurityNamespaces   = 1 // LinuxSandboxSecurityContext.namespace_options
	fieldNamespaceNetwork     = 1 // NamespaceOption.network, a NamespaceMode
	fieldNamespacePID         = 2 // NamespaceOption.pid
	fieldNamespaceIPC         = 3 // NamespaceOption.ipc
	namespaceModeNode         = 2 // NamespaceMode NODE (POD 0, CONTAINER 1, TARGET 3)
	fieldMapKey               = 1 // a map entry's key
	fieldMapValue             = 2 // a map entry's value

	fieldDNSServers  = 1 // DNSConfig.servers
	fieldDNSSearches = 2 // DNSConfig.searches
	fieldDNSOptions  = 3 // DNSConfig.options

	fieldPortProtocol      = 1 // PortMapping.protocol (TCP 0, UDP 1, SCTP 2)
	fieldPortContainerPort = 2 // PortMapping.container_port
	fieldPortHostPort      = 3 // PortMapping.host_port
	fieldPortHostIP        = 4 // PortMapping.host_ip
)

// criPod is what podbox takes from a pod's PodSandboxConfig.
type criPod struct {
	// Hostname is the pod's, which CRI's podsandbox sets in its sandbox
	// container's UTS namespace.
	Hostname string
	// Ports are the port mappings with a host port; CRI gives the others
	// to nobody either (they only document the container's ports).
	Ports []nat.Mapping
	// DNS is the pod's dns_config, complete (see resolvconf.Config); nil
	// when the config has none and the node's settings apply.
	DNS *resolvconf.Config
	// Sysctls are linux.sysctls, set in the pod's namespaces (CRI's
	// podsandbox puts them in the sandbox container's spec instead).
	Sysctls map[string]string
	// Host are the node's namespaces the pod shares: those its
	// linux.security_context.namespace_options set to NODE (a network of
	// the node's brings its UTS namespace, as for CRI's sandbox container).
	Host sandbox.HostNamespaces
}

// applyCRIPod takes into o the hostname, namespace modes, port mappings,
// DNS settings and sysctls of the PodSandboxConfig that containerd's CRI sends as req's options; options of
// another type are not podbox's to read. The ports count only for a pod with
// a network namespace of its own (req's, made by CRI's CNI chain): a pod on
// the node's network binds the node's ports itself, which is all a port
// mapping of such a pod says. A request that gives ports, DNS settings or
// sysctls both as podbox annotations and in the config is refused: nothing
// says which should win.
func applyCRIPod(req *sbapi.CreateSandboxRequest, o *sandbox.Options) error {
	if req.Options == nil || !isPodSandboxConfig(req.Options.TypeUrl) {
		return nil
	}
	pod, err := decodeCRIPod(req.Options.Value)
	if err != nil {
		return fmt.Errorf("%w: sandbox %q: %v", errInvalid, req.SandboxId, err)
	}
	if len(pod.Ports) > 0 && req.NetnsPath != "" {
		if len(o.Ports) > 0 {
			return fmt.Errorf("%w: sandbox %q: ports both in %s and in the PodSandboxConfig", errInvalid, req.SandboxId, annPorts)
		}
		o.Ports = pod.Ports
	}
	if pod.DNS != nil {
		if !o.DNS.IsZero() {
			return fmt.Errorf("%w: sandbox %q: DNS settings both in io.podbox.dns.* and in the PodSandboxConfig", errInvalid, req.SandboxId)
		}
		o.DNS = *pod.DNS
	}
	o.Host = pod.Host
	if pod.Hostname != "" && o.Hostname == "" {
		o.Hostname = pod.Hostname
	}
	if len(pod.Sysctls) > 0 {
		if len(o.Sysctls) > 0 {
			return fmt.Errorf("%w: sandbox %q: sysctls both in %s* and in the PodSandboxConfig", errInvalid, req.SandboxId, annSysctlPrefix)
		}
		o.Sysctls = pod.Sysctls
	}
	return nil
}

// decodeCRIPod reads the hostname, port mappings, DNS settings, sysctls and
// namespace modes of a marshaled PodSandboxConfig; every other field is skipped unread.
func decodeCRIPod(b []byte) (criPod, error) {
	var pod criPod
	var dns resolvconf.Config
	hasDNS := false
	nPorts := 0
	err := eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch num {
		case fieldPodHostname:
			if typ != protowire.BytesType {
				return fmt.Errorf("hostname: %w", wireTypeError(num, typ, protowire.BytesType))
			}
			pod.Hostname = string(v)
		case fieldPodDNSConfig:
			if typ != protowire.BytesType {
				return fmt.Errorf("dns_config: %w", wireTypeError(num, typ, protowire.BytesType))
			}
			// A message field given twice is merged; DNSConfig's are all
			// repeated, so merging appends.
			hasDNS = true
			if err := decodeDNSConfig(v, &dns); err != nil {
				return fmt.Errorf("dns_config: %w", err)
			}
		case fieldPodPortMappings:
			if typ != protowire.BytesType {
				return fmt.Errorf("port_mappings: %w", wireTypeError(num, typ, protowire.BytesType))
			}
			m, ok, err := decodePortMapping(v)
			if err != nil {
				return fmt.Errorf("port_mappings[%d]: %w", nPorts, err)
			}
			nPorts++
			if !ok {
				return nil
			}
			for _, o := range pod.Ports {
				if m.Overlaps(o) {
					return fmt.Errorf("port_mappings[%d]: host port %d/%s is mapped twice", nPorts-1, m.HostPort, m.Protocol)
				}
			}
			pod.Ports = append(pod.Ports, m)
		case fieldPodLinux:
			if typ != protowire.BytesType {
				return fmt.Errorf("linux: %w", wireTypeError(num, typ, protowire.BytesType))
			}
			if err := decodeLinux(v, &pod); err != nil {
				return fmt.Errorf("linux: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return criPod{}, fmt.Errorf("PodSandboxConfig: %w", err)
	}
	if hasDNS {
		dns.Complete = true
		if err := dns.Validate(); err != nil {
			return criPod{}, fmt.Errorf("PodSandboxConfig: dns_config: %w", err)
		}
		pod.DNS = &dns
	}
	return pod, nil
}

// decodeLinux takes into pod the sysctls and the namespace modes of a
// marshaled LinuxPodSandboxConfig; its other fields are skipped unread.
func decodeLinux(b []byte, pod *criPod) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != fieldLinuxSysctls && num != fieldLinuxSecurityContext {
			return nil
		}
		name := "sysctls"
		if num == fieldLinuxSecurityContext {
			name = "security_context"
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("%s: %w", name, wireTypeError(num, typ, protowire.BytesType))
		}
		if num == fieldLinuxSecurityContext {
			if err := decodeNamespaceModes(v, &pod.Host); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		}
		// A map entry is a message of key and value; either may be
		// missing (the empty string), and a later entry for a key wins.
		var key, value string
		err := eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if num != fieldMapKey && num != fieldMapValue {
				return nil
			}
			if typ != protowire.BytesType {
				return wireTypeError(num, typ, protowire.BytesType)
			}
			if num == fieldMapKey {
				key = string(v)
			} else {
				value = string(v)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("sysctls: %w", err)
		}
		if pod.Sysctls == nil {
			pod.Sysctls = map[string]string{}
		}
		pod.Sysctls[key] = value
		return nil
	})
}

// decodeNamespaceModes sets in h the namespaces that a marshaled
// LinuxSandboxSecurityContext's namespace_options give the node's.
func decodeNamespaceModes(b []byte, h *sandbox.HostNamespaces) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != fieldSecurityNamespaces {
			return nil
		}
		if typ != protowire.BytesType {
			return fmt.Errorf("namespace_options: %w", wireTypeError(num, typ, protowire.BytesType))
		}
		return eachField(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if num < fieldNamespaceNetwork || num > fieldNamespaceIPC {
				return nil
			}
			if typ != protowire.VarintType {
				return fmt.Errorf("namespace_options: %w", wireTypeError(num, typ, protowire.VarintType))
			}
			mode, _ := protowire.ConsumeVarint(v)
			node := mode == namespaceModeNode
			switch num {
			case fieldNamespaceNetwork:
				h.UTS = node
			case fieldNamespacePID:
				h.PID = node
			case fieldNamespaceIPC:
				h.IPC = node
			}
			return nil
		})
	})
}

// decodeDNSConfig appends the servers, searches and options of a
// marshaled DNSConfig to c.
func decodeDNSConfig(b []byte, c *resolvconf.Config) error {
	return eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num < fieldDNSServers || num > fieldDNSOptions {
			return nil
		}
		if typ != protowire.BytesType {
			return wireTypeError(num, typ, protowire.BytesType)
		}
		s := string(v)
		switch num {
		case fieldDNSServers:
			a, err := netip.ParseAddr(s)
			if err != nil {
				return fmt.Errorf("server %q: not an IP address", s)
			}
			c.Servers = append(c.Servers, a)
		case fieldDNSSearches:
			c.Searches = append(c.Searches, s)
		case fieldDNSOptions:
			c.Options = append(c.Options, s)
		}
		return nil
	})
}

// decodePortMapping reads a marshaled PortMapping as the mapping it
// publishes; ok is false for one without a host port, which CRI leaves
// unpublished too.
func decodePortMapping(b []byte) (m nat.Mapping, ok bool, err error) {
	var proto uint64
	var containerPort, hostPort int32
	var hostIP string
	err = eachField(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num < fieldPortProtocol || num > fieldPortHostIP {
			return nil
		}
		want := protowire.VarintType
		if num == fieldPortHostIP {
			want = protowire.BytesType
		}
		if typ != want {
			return wireTypeError(num, typ, want)
		}
		switch num {
		case fieldPortProtocol:
			proto, _ = protowire.ConsumeVarint(v)
		case fieldPortContainerPort:
			x, _ := protowire.ConsumeVarint(v)
			containerPort = int32(x) // int32 fields are sign-extended varints
		case fieldPortHostPort:
			x, _ := protowire.ConsumeVarint(v)
			hostPort = int32(x)
		case fieldPortHostIP:
			hostIP = string(v)
		}
		return nil
	})
	if err != nil {
		return m, false, err
	}
	if hostPort <= 0 {
		return m, false, nil
	}
	what := fmt.Sprintf("host port %d to container port %d", hostPort, containerPort)
	switch proto {
	case 0:
		m.Protocol = "tcp"
	case 1:
		m.Protocol = "udp"
	case 2:
		return m, false, fmt.Errorf("%s: protocol SCTP: podbox publishes TCP and UDP ports only", what)
	default:
		return m, false, fmt.Errorf("%s: unknown protocol %d", what, proto)
	}
	if hostPort > 65535 || containerPort < 1 || containerPort > 65535 {
		return m, false, fmt.Errorf("%s: want ports from 1 to 65535", what)
	}
	m.HostPort, m.Port = uint16(hostPort), uint16(containerPort)
	if hostIP != "" {
		ip, err := netip.ParseAddr(hostIP)
		if err != nil || !ip.Is4() {
			return m, false, fmt.Errorf("%s: host IP %q: podbox publishes on IPv4 addresses only", what, hostIP)
		}
		if !ip.IsUnspecified() {
			m.HostIP = ip
		}
	}
	return m, true, nil
}

// eachField calls fn with every field of the marshaled message b: its
// number, wire type and value (a varint's own bytes, a length-delimited
// field's contents, a fixed field's bytes). Groups are skipped whole.
func eachField(b []byte, fn func(protowire.Number, protowire.Type, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n >= 0 {
				v = b[:n]
			}
		}
		if n < 0 {
			return fmt.Errorf("field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
		if err := fn(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}

// wireTypeError says that field num came with wire type got where the
// message's definition has want: not the message podbox reads.
func wireTypeError(num protowire.Number, got, want protowire.Type) error {
	return fmt.Errorf("field %d has wire type %d, want %d: not the message of k8s.io/cri-api", num, got, want)
}
