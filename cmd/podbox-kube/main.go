// Command podbox-kube reads Kubernetes manifests on stdin and writes the
// podbox plan that runs them (package kube/plan) as JSON on stdout: the
// work of `podbox play`, which executes it. It is a binary of its own so
// that the Kubernetes API types' packages, large and busy at init, are
// loaded only by play, never by `podbox sandbox create`.
//
// On bad input it prints the problems, one per line, on stderr and exits 1.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/podbox/podbox/kube"
)

func main() {
	if len(os.Args) > 1 {
		fmt.Fprintln(os.Stderr, "usage: podbox-kube < MANIFESTS.yaml (run by podbox play, not by hand)")
		os.Exit(2)
	}
	p, err := kube.Plan(os.Stdin, kube.Options{})
	if err == nil {
		err = json.NewEncoder(os.Stdout).Encode(p)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
