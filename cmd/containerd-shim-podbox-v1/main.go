// Command containerd-shim-podbox-v1 is podbox's per-sandbox shim, started by
// containerd or the podbox CLI as runtime io.containerd.podbox.v1.
package main

import (
	"fmt"
	"os"
)

var version = "dev"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Printf("containerd-shim-podbox-v1 %s\n", version)
		return
	}
	fmt.Fprintln(os.Stderr, "containerd-shim-podbox-v1: shim services arrive with the sandbox issue")
	os.Exit(2)
}
