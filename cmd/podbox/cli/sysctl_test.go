package cli

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseSysctls(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want map[string]string
		err  string
	}{
		{in: nil},
		{in: []string{"kernel.shm_rmid_forced=1", "fs.mqueue.msg_max=100", "net.ipv4.ip_local_port_range=20000 30000", "kernel.domainname="},
			want: map[string]string{"kernel.shm_rmid_forced": "1", "fs.mqueue.msg_max": "100",
				"net.ipv4.ip_local_port_range": "20000 30000", "kernel.domainname": ""}},
		// A value may hold "=", and a key "/" separators with a "." of its own.
		{in: []string{"net/ipv4/conf/eth0.100/rp_filter=2", "kernel.sem=250 32000 32 128"},
			want: map[string]string{"net/ipv4/conf/eth0.100/rp_filter": "2", "kernel.sem": "250 32000 32 128"}},
		{in: []string{"kernel.msgmax=a=b"}, want: map[string]string{"kernel.msgmax": "a=b"}},
		{in: []string{"kernel.sem"}, err: `--sysctl "kernel.sem": want KEY=VALUE`},
		{in: []string{"=1"}, err: "want KEY=VALUE"},
		{in: []string{"fs.mqueue.msg_max=10", "fs.mqueue.msg_max=100"}, err: `--sysctl "fs.mqueue.msg_max=100": fs.mqueue.msg_max given twice`},
		{in: []string{"vm.swappiness=10"}, err: `--sysctl "vm.swappiness=10": sysctl "vm.swappiness" is not in a namespace of the sandbox`},
		{in: []string{"kernel.hostname=web"}, err: "set the sandbox's hostname instead"},
		{in: []string{"net/../vm/swappiness=1"}, err: "not a sysctl name"},
	} {
		got, err := parseSysctls(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("parseSysctls(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseSysctls(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
