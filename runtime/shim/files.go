package shim

import (
	"encoding/json"
	"os"

	"github.com/podbox/podbox/sandbox"
)

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

// writeJSON replaces path atomically (sandbox.ReplaceFile).
func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sandbox.ReplaceFile(path, b)
}
