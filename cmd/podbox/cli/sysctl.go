package cli

import (
	"fmt"
	"strings"

	"github.com/podbox/podbox/sandbox"
)

// annSysctlPrefix + KEY is the annotation of CreateSandbox that sets sysctl
// KEY in the sandbox's namespaces (docs/shim-protocol.md).
const annSysctlPrefix = "io.podbox.sysctl."

// parseSysctls parses --sysctl KEY=VALUE flags: each KEY once, and only a
// sysctl of a namespace the sandbox owns (sandbox.SysctlNamespace), so
// that a refused one fails before any shim starts.
func parseSysctls(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m, err := parseKeyValues("--sysctl", kvs)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, kv := range kvs {
		k, _, _ := strings.Cut(kv, "=")
		if seen[k] {
			return nil, fmt.Errorf("--sysctl %q: %s given twice", kv, k)
		}
		seen[k] = true
		if _, err := sandbox.SysctlNamespace(k); err != nil {
			return nil, fmt.Errorf("--sysctl %q: %w", kv, err)
		}
	}
	return m, nil
}

// sysctlAnnotations adds the annotations of o's --sysctl flags to ann.
func (o createOptions) sysctlAnnotations(ann map[string]string) error {
	m, err := parseSysctls(o.sysctls)
	if err != nil {
		return err
	}
	for k, v := range m {
		ann[annSysctlPrefix+k] = v
	}
	return nil
}
