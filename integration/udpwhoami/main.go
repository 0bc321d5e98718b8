// Command udpwhoami answers every UDP datagram it receives on PORT with the
// datagram, a space and the sender's address as it saw it ("ping
// 10.100.0.9:41234"). The published-ports tests run it in a sandbox, built
// static into the container's root filesystem, to see that a UDP port
// reaches the sandbox and that the sandbox sees the client's own address:
// busybox, which the test root filesystems are made of, has no UDP server
// that tells the sender.
//
//	udpwhoami PORT
package main

import (
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: udpwhoami PORT")
		os.Exit(2)
	}
	conn, err := net.ListenPacket("udp4", ":"+os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "udpwhoami:", err)
		os.Exit(1)
	}
	buf := make([]byte, 64<<10)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			fmt.Fprintln(os.Stderr, "udpwhoami:", err)
			os.Exit(1)
		}
		// A lost answer is the client's to notice: it asks again.
		conn.WriteTo(fmt.Appendf(nil, "%s %s", buf[:n], from), from)
	}
}
