package shim

import (
	"os"
	"slices"
	"testing"
)

func TestServingEnv(t *testing.T) {
	tests := []struct {
		name      string
		set       map[string]string
		want      []string
		wantNoVar string
	}{
		{"defaults", nil, []string{"GOMAXPROCS=1", "GODEBUG=memprofilerate=0"}, ""},
		{"caller's GOMAXPROCS kept", map[string]string{"GOMAXPROCS": "4"}, []string{"GODEBUG=memprofilerate=0"}, "GOMAXPROCS=1"},
		{"caller's GODEBUG extended", map[string]string{"GODEBUG": "gctrace=1"}, []string{"GOMAXPROCS=1", "GODEBUG=gctrace=1,memprofilerate=0"}, ""},
		{"caller's memprofilerate kept", map[string]string{"GODEBUG": "memprofilerate=1"}, []string{"GOMAXPROCS=1"}, "GODEBUG=memprofilerate=0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Unset for the test: t.Setenv restores the previous value.
			for _, k := range []string{"GOMAXPROCS", "GODEBUG"} {
				t.Setenv(k, "")
				unsetenv(t, k)
			}
			for k, v := range tt.set {
				t.Setenv(k, v)
			}
			got := servingEnv([]string{"PODBOX_ROOT=/r"})
			if got[0] != "PODBOX_ROOT=/r" {
				t.Errorf("servingEnv dropped the given environment: %q", got)
			}
			for _, w := range tt.want {
				if !slices.Contains(got, w) {
					t.Errorf("servingEnv = %q, want it to hold %q", got, w)
				}
			}
			if tt.wantNoVar != "" && slices.Contains(got, tt.wantNoVar) {
				t.Errorf("servingEnv = %q overrides the caller with %q", got, tt.wantNoVar)
			}
		})
	}
}

func unsetenv(t *testing.T, k string) {
	t.Helper()
	if err := os.Unsetenv(k); err != nil {
		t.Fatal(err)
	}
}
