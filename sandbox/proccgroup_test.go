package sandbox

import (
	"os"
	"reflect"
	"testing"
)

func TestParseProcCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, text string
		want       CgroupPaths
		wantErr    bool
	}{
		{
			name: "pure v2",
			text: "0::/kubepods.slice/cri-containerd-abc.scope\n",
			want: CgroupPaths{Path: "/kubepods.slice/cri-containerd-abc.scope"},
		},
		{
			// A hybrid host whose shim is in another memory cgroup than
			// in the other hierarchies, as runc places a relative path.
			name: "hybrid, paths differing by hierarchy",
			text: "9:name=systemd:/\n8:pids:/p.slice:cri-containerd:abc\n4:memory:/svc/p.slice:cri-containerd:abc\n" +
				"2:cpu,cpuacct:/p.slice:cri-containerd:abc\n0::/\n",
			want: CgroupPaths{Path: "/", ByController: map[string]string{
				"pids": "/p.slice:cri-containerd:abc", "memory": "/svc/p.slice:cri-containerd:abc",
				"cpu": "/p.slice:cri-containerd:abc", "cpuacct": "/p.slice:cri-containerd:abc",
			}},
		},
		{name: "empty", text: "\n", wantErr: true},
		{name: "malformed", text: "4:memory\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseProcCgroup(tc.text)
			if (err != nil) != tc.wantErr || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseProcCgroup(%q) = %+v, %v; want %+v (error %t)", tc.text, got, err, tc.want, tc.wantErr)
			}
		})
	}
	cg := CgroupPaths{Path: "/u", ByController: map[string]string{"memory": "/m"}}
	if cg.In("memory") != "/m" || cg.In("cpu") != "/u" {
		t.Errorf("In: memory %q, cpu %q; want /m, /u", cg.In("memory"), cg.In("cpu"))
	}
}

// The test's own process is in some cgroup of every hierarchy.
func TestProcessCgroups(t *testing.T) {
	cg, err := ProcessCgroups(os.Getpid())
	if err != nil || cg.IsZero() {
		t.Fatalf("ProcessCgroups(self) = %+v, %v", cg, err)
	}
	if _, err := ProcessCgroups(-1); err == nil {
		t.Error("ProcessCgroups(-1): no error")
	}
}
