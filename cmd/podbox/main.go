// Command podbox is the podbox CLI: it creates sandboxes and joins containers
// into them by talking to each sandbox's shim.
package main

import (
	"fmt"
	"os"
)

var version = "dev"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Printf("podbox %s\n", version)
		return
	}
	fmt.Fprintln(os.Stderr, "usage: podbox version\n(sandbox commands arrive with the sandbox issue)")
	os.Exit(2)
}
