// Package ipam leases IPv4 addresses of one subnet to owners (sandbox IDs),
// host-local style: leases are persisted in a directory under the state root
// and guarded by a file lock, so many processes (one shim per sandbox) can
// lease and release at once. It never hands out the network, gateway or
// broadcast address.
package ipam

import (
	"errors"
	"net/netip"
)

// ErrExhausted is returned (wrapped, naming the subnet) when every address of
// the subnet is leased.
var ErrExhausted = errors.New("no free address")

// Lease is one address held by one owner.
type Lease struct {
	Owner string     `json:"owner"`
	IP    netip.Addr `json:"ip"`
}

// Pool hands out the host addresses of one subnet.
type Pool struct {
	dir     string
	subnet  netip.Prefix
	gateway netip.Addr
}

// Open opens the pool persisted in dir, creating it if needed. gateway is
// never leased. TODO(ipam helper): implement.
func Open(dir string, subnet netip.Prefix, gateway netip.Addr) (*Pool, error) {
	panic("ipam: not implemented yet")
}

// Lease returns owner's address, allocating one if owner holds none. Calling
// it again for the same owner returns the same address.
func (p *Pool) Lease(owner string) (netip.Addr, error) { panic("ipam: not implemented yet") }

// Release frees owner's address. Releasing an owner that holds none is success.
func (p *Pool) Release(owner string) error { panic("ipam: not implemented yet") }

// Leases lists the current leases, ordered by address.
func (p *Pool) Leases() ([]Lease, error) { panic("ipam: not implemented yet") }
