package stdio

import (
	"os"
	"testing"
)

// The socket a runtime hands a container's terminal to is root's alone:
// whoever connects first could feed it a terminal of their own.
func TestConsoleSocketIsOwnerOnly(t *testing.T) {
	s, err := NewConsoleSocket()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Mode() & (os.ModeType | os.ModePerm); got != os.ModeSocket|0o600 {
		t.Errorf("%s: mode %v, want %v", s.Path(), got, os.ModeSocket|0o600)
	}
}
