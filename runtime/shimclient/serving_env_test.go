package shimclient

import (
	"slices"
	"testing"
)

func TestServingEnv(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"defaults", []string{"PODBOX_ROOT=/r"}, []string{"PODBOX_ROOT=/r", "GOMAXPROCS=1", "GODEBUG=memprofilerate=0", EnvServingSet + "=GOMAXPROCS,GODEBUG"}},
		{"caller's GOMAXPROCS kept", []string{"GOMAXPROCS=4", "PODBOX_ROOT=/r"}, []string{"GOMAXPROCS=4", "PODBOX_ROOT=/r", "GODEBUG=memprofilerate=0", EnvServingSet + "=GODEBUG"}},
		{"caller's GODEBUG extended in place", []string{"GODEBUG=gctrace=1", "PODBOX_ROOT=/r"}, []string{"GODEBUG=gctrace=1,memprofilerate=0", "PODBOX_ROOT=/r", "GOMAXPROCS=1", EnvServingSet + "=GODEBUG,GOMAXPROCS"}},
		{"caller's memprofilerate kept", []string{"GODEBUG=memprofilerate=1"}, []string{"GODEBUG=memprofilerate=1", "GOMAXPROCS=1", EnvServingSet + "=GOMAXPROCS"}},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=memprofilerate=0", "GOMAXPROCS=1", EnvServingSet + "=GODEBUG,GOMAXPROCS"}},
		{"all the caller's", []string{"GODEBUG=memprofilerate=1", "GOMAXPROCS=2"}, []string{"GODEBUG=memprofilerate=1", "GOMAXPROCS=2"}},
		{"a stale list replaced", []string{EnvServingSet + "=GOMAXPROCS", "GOMAXPROCS=3"}, []string{"GOMAXPROCS=3", "GODEBUG=memprofilerate=0", EnvServingSet + "=GODEBUG"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := servingEnv(tt.env)
			if !slices.Equal(got, tt.want) {
				t.Errorf("servingEnv(%q) = %q, want %q", tt.env, got, tt.want)
			}
			// The shim gets the caller's environment back, for runc.
			want := tt.env
			switch tt.name {
			case "a stale list replaced":
				want = tt.env[1:]
			case "empty GODEBUG":
				want = nil // as good as the empty one
			}
			if back := CallerEnv(got); !slices.Equal(back, want) && (len(back) > 0 || len(want) > 0) {
				t.Errorf("CallerEnv(%q) = %q, want the caller's %q", got, back, want)
			}
		})
	}
	if env := []string{"A=1"}; !slices.Equal(CallerEnv(env), env) {
		t.Error("CallerEnv changed an environment servingEnv did not make")
	}
}
