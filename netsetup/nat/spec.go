package nat

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Mapping is one published port: HostPort of the node (of HostIP only, when
// set) forwarded to Port of the sandbox.
type Mapping struct {
	HostIP   netip.Addr `json:"hostIP,omitzero"`
	HostPort uint16     `json:"hostPort"`
	Port     uint16     `json:"port"`
	Protocol string     `json:"protocol"` // tcp or udp
}

// String is the mapping as -p takes it: [HOSTIP:]HOSTPORT:PORT/PROTOCOL.
func (m Mapping) String() string {
	s := fmt.Sprintf("%d:%d/%s", m.HostPort, m.Port, m.Protocol)
	if m.HostIP.IsValid() {
		s = m.HostIP.String() + ":" + s
	}
	return s
}

// Overlaps reports whether m and o claim the same host port: same protocol
// and port, on the same address or with either on every address.
func (m Mapping) Overlaps(o Mapping) bool {
	return m.Protocol == o.Protocol && m.HostPort == o.HostPort &&
		(!m.HostIP.IsValid() || !o.HostIP.IsValid() || m.HostIP == o.HostIP)
}

// Parse parses one -p value, [HOSTIP:]HOSTPORT:PORT[/tcp|/udp] as podman
// and Docker take it, where both ports may be ranges of one length
// (8000-8010:8000-8010), into one mapping per port. The host IP must be an
// IPv4 address: the pod network is IPv4 only.
func Parse(spec string) ([]Mapping, error) {
	bad := func(format string, args ...any) ([]Mapping, error) {
		return nil, fmt.Errorf("-p %q: %s", spec, fmt.Sprintf(format, args...))
	}
	rest, proto, hasProto := strings.Cut(spec, "/")
	if !hasProto {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return bad("protocol %q: want tcp or udp", proto)
	}
	parts := strings.Split(rest, ":")
	var hostIP netip.Addr
	switch len(parts) {
	case 2:
	case 3:
		ip, err := netip.ParseAddr(parts[0])
		if err != nil || !ip.Is4() {
			return bad("host IP %q: want an IPv4 address", parts[0])
		}
		if !ip.IsUnspecified() {
			hostIP = ip
		}
		parts = parts[1:]
	default:
		return bad("want [HOSTIP:]HOSTPORT:PORT[/tcp|/udp]")
	}
	hostLo, hostHi, err := portRange(parts[0])
	if err != nil {
		return bad("host port %v", err)
	}
	lo, hi, err := portRange(parts[1])
	if err != nil {
		return bad("port %v", err)
	}
	if hostHi-hostLo != hi-lo {
		return bad("host ports %d-%d and ports %d-%d differ in length", hostLo, hostHi, lo, hi)
	}
	out := make([]Mapping, 0, hi-lo+1)
	for i := 0; i <= int(hi-lo); i++ {
		out = append(out, Mapping{HostIP: hostIP, HostPort: hostLo + uint16(i), Port: lo + uint16(i), Protocol: proto})
	}
	return out, nil
}

// portRange parses PORT or LO-HI, each in 1-65535.
func portRange(s string) (uint16, uint16, error) {
	loS, hiS, isRange := strings.Cut(s, "-")
	lo, err := port(loS)
	if err != nil {
		return 0, 0, err
	}
	if !isRange {
		return lo, lo, nil
	}
	hi, err := port(hiS)
	if err != nil {
		return 0, 0, err
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("range %q is reversed", s)
	}
	return lo, hi, nil
}

func port(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q: want a number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// ParseAll parses every -p value and refuses one host port given twice.
func ParseAll(specs []string) ([]Mapping, error) {
	var out []Mapping
	// Only mappings of one host port and protocol can overlap: grouped so,
	// the check is linear, also for ranges of thousands of ports.
	type hostPort struct {
		port  uint16
		proto string
	}
	held := map[hostPort][]Mapping{}
	for _, s := range specs {
		ms, err := Parse(s)
		if err != nil {
			return nil, err
		}
		for _, m := range ms {
			k := hostPort{m.HostPort, m.Protocol}
			for _, o := range held[k] {
				if m.Overlaps(o) {
					return nil, fmt.Errorf("-p %q: host port %d/%s is published twice", s, m.HostPort, m.Protocol)
				}
			}
			held[k] = append(held[k], m)
			out = append(out, m)
		}
	}
	return out, nil
}
