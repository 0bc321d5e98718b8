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
		{"defaults", []string{"PODBOX_ROOT=/r"}, []string{"PODBOX_ROOT=/r", "GOMAXPROCS=1", "GODEBUG=memprofilerate=0"}},
		{"caller's GOMAXPROCS kept", []string{"GOMAXPROCS=4", "PODBOX_ROOT=/r"}, []string{"GOMAXPROCS=4", "PODBOX_ROOT=/r", "GODEBUG=memprofilerate=0"}},
		{"caller's GODEBUG extended in place", []string{"GODEBUG=gctrace=1", "PODBOX_ROOT=/r"}, []string{"GODEBUG=gctrace=1,memprofilerate=0", "PODBOX_ROOT=/r", "GOMAXPROCS=1"}},
		{"caller's memprofilerate kept", []string{"GODEBUG=memprofilerate=1"}, []string{"GODEBUG=memprofilerate=1", "GOMAXPROCS=1"}},
		{"empty GODEBUG", []string{"GODEBUG="}, []string{"GODEBUG=memprofilerate=0", "GOMAXPROCS=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := servingEnv(tt.env); !slices.Equal(got, tt.want) {
				t.Errorf("servingEnv(%q) = %q, want %q", tt.env, got, tt.want)
			}
		})
	}
}
