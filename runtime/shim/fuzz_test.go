package shim

import (
	"encoding/hex"
	"reflect"
	"strings"
	"testing"
)

// FuzzDecodeCRIPod feeds decodeCRIPod what containerd passes through from
// the kubelet: any bytes as a marshaled PodSandboxConfig. It must never
// panic; what it accepts must be what podbox can carry out (ports in range,
// TCP or UDP on IPv4, a resolv.conf that stays one setting per line), and
// it must read the same bytes the same way twice.
func FuzzDecodeCRIPod(f *testing.F) {
	for _, h := range []string{criWebPod, criSCTPPod, criTunedPod} {
		b, err := hex.DecodeString(h)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(cat(portMapping(0, 80, 8080, "127.0.0.1"), bytesField(fieldPodDNSConfig, stringField(fieldDNSSearches, "a.example")),
		stringField(fieldPodHostname, "web"), bytesField(fieldPodLinux, sysctlEntry("net.ipv4.ip_forward", "1"))))
	f.Fuzz(func(t *testing.T, b []byte) {
		pod, err := decodeCRIPod(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "PodSandboxConfig") {
				t.Fatalf("error %q does not name the PodSandboxConfig", err)
			}
			return
		}
		for _, m := range pod.Ports {
			if m.HostPort == 0 || m.Port == 0 || (m.Protocol != "tcp" && m.Protocol != "udp") ||
				(m.HostIP.IsValid() && !m.HostIP.Is4()) {
				t.Fatalf("accepted mapping %+v", m)
			}
		}
		if pod.DNS != nil {
			if err := pod.DNS.Validate(); err != nil {
				t.Fatalf("accepted DNS settings that resolv.conf cannot hold: %v", err)
			}
		}
		again, err := decodeCRIPod(b)
		if err != nil || !reflect.DeepEqual(again, pod) {
			t.Fatalf("decoded twice: %+v then %+v, %v", pod, again, err)
		}
	})
}
