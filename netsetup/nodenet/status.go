package nodenet

import (
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Status is the configuration and what the node's namespace holds of it.
type Status struct {
	Config  *Config `json:"config"`
	Applied Applied `json:"applied"`
}

// Applied is what is actually installed, read back from the kernel.
type Applied struct {
	IPForward bool       `json:"ipForward"`
	Bridge    *LinkState `json:"bridge"`
	VXLAN     *LinkState `json:"vxlan,omitempty"`
	// Routes are the routes podbox installed (protocol RouteProtocol), in
	// `ip route` form.
	Routes []string `json:"routes"`
	// FDB are the VXLAN device's forwarding entries ("MAC dst IP").
	FDB []string `json:"fdb,omitempty"`
	// Neighbours are the VXLAN device's permanent neighbours ("IP lladdr MAC").
	Neighbours []string `json:"neighbours,omitempty"`
}

// LinkState describes one link; nil in Applied means it does not exist.
type LinkState struct {
	Name      string   `json:"name"`
	Up        bool     `json:"up"`
	MTU       int      `json:"mtu"`
	MAC       string   `json:"mac"`
	Addresses []string `json:"addresses"`
	VNI       int      `json:"vni,omitempty"`
	Port      int      `json:"port,omitempty"`
	Local     string   `json:"local,omitempty"`
}

// Status reads the configuration and the state of the node's namespace.
func (h Host) Status() (*Status, error) {
	c, err := Load(h.Root)
	if err != nil {
		return nil, err
	}
	nh, err := h.handle()
	if err != nil {
		return nil, err
	}
	defer nh.Close()
	st := &Status{Config: c, Applied: Applied{Routes: []string{}}}
	if v, err := h.readIPForward(); err == nil {
		st.Applied.IPForward = v == "1"
	}
	if st.Applied.Bridge, err = linkState(nh, c.Bridge); err != nil {
		return nil, err
	}
	if c.Mode == ModeVXLAN {
		if st.Applied.VXLAN, err = linkState(nh, VXLANDevice); err != nil {
			return nil, err
		}
	}
	rs, err := ourRoutes(nh)
	if err != nil {
		return nil, err
	}
	for _, r := range rs {
		st.Applied.Routes = append(st.Applied.Routes, routeString(nh, r))
	}
	if st.Applied.VXLAN != nil {
		l, err := nh.LinkByName(VXLANDevice)
		if err != nil {
			return nil, fmt.Errorf("node: vxlan %q: %w", VXLANDevice, err)
		}
		st.Applied.FDB, st.Applied.Neighbours, err = vxlanEntries(nh, l)
		if err != nil {
			return nil, err
		}
	}
	return st, nil
}

// vxlanEntries lists the device's FDB entries with a remote and its
// permanent IPv4 neighbours.
func vxlanEntries(nh *netlink.Handle, l netlink.Link) (fdb, neigh []string, err error) {
	fs, err := nh.NeighList(l.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, nil, fmt.Errorf("node: vxlan %q: list fdb: %w", VXLANDevice, err)
	}
	fdb = []string{}
	for _, f := range fs {
		if f.IP != nil && !f.IP.IsUnspecified() {
			fdb = append(fdb, f.HardwareAddr.String()+" dst "+f.IP.String())
		}
	}
	ns, err := nh.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return nil, nil, fmt.Errorf("node: vxlan %q: list neighbours: %w", VXLANDevice, err)
	}
	neigh = []string{}
	for _, n := range ns {
		if n.State&netlink.NUD_PERMANENT != 0 {
			neigh = append(neigh, n.IP.String()+" lladdr "+n.HardwareAddr.String())
		}
	}
	return fdb, neigh, nil
}

func linkState(nh *netlink.Handle, name string) (*LinkState, error) {
	l, err := nh.LinkByName(name)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: link %q: %w", name, err)
	}
	a := l.Attrs()
	s := &LinkState{Name: name, Up: a.Flags&net.FlagUp != 0, MTU: a.MTU, MAC: a.HardwareAddr.String(), Addresses: []string{}}
	addrs, err := nh.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("node: link %q: list addresses: %w", name, err)
	}
	for _, ad := range addrs {
		s.Addresses = append(s.Addresses, ad.IPNet.String())
	}
	if vx, ok := l.(*netlink.Vxlan); ok {
		s.VNI, s.Port = vx.VxlanId, vx.Port
		if vx.SrcAddr != nil {
			s.Local = vx.SrcAddr.String()
		}
	}
	return s, nil
}

// String renders a LinkState for show's text output.
func (s *LinkState) String() string {
	if s == nil {
		return "missing"
	}
	state := "down"
	if s.Up {
		state = "up"
	}
	out := fmt.Sprintf("%s %s mtu %d mac %s", s.Name, state, s.MTU, s.MAC)
	if len(s.Addresses) > 0 {
		out += " addr " + strings.Join(s.Addresses, ",")
	}
	if s.VNI != 0 {
		out += fmt.Sprintf(" vni %d port %d local %s", s.VNI, s.Port, s.Local)
	}
	return out
}
