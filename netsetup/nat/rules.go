package nat

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"

	"github.com/podbox/podbox/netsetup"
)

// TableName is podbox's own nftables table (family ip).
const TableName = "podbox"

// Chains of the table. The base chains only send traffic for the node's
// own addresses to ports, which holds one DNAT rule per published port.
const (
	chainPrerouting  = "prerouting"
	chainOutput      = "output"
	chainPostrouting = "postrouting"
	chainPorts       = "ports"
)

// commentPrefix starts the comment of every forwarding rule; the rest names
// the sandbox and what it publishes, so that `nft list table ip podbox`
// reads as the list of published ports.
const commentPrefix = "podbox sandbox "

// Rules are the published ports of one node.
type Rules struct {
	// NodeNetNS is the pin of the node's network namespace; "" is the
	// caller's.
	NodeNetNS string
	// Bridge and Subnet are the pod network's: what hairpin traffic
	// leaves by and comes from.
	Bridge string
	Subnet netip.Prefix
	// Lock is a file locked around the check for conflicts and the
	// addition, so that two sandboxes created at once cannot publish one
	// port; none when empty.
	Lock string
}

// Published is one forwarding rule as read back from the table.
type Published struct {
	SandboxID string
	Mapping   Mapping
	PodIP     netip.Addr
}

// ConflictError says that a host port is published already.
type ConflictError struct {
	Mapping Mapping
	Holder  string // the sandbox (ID) or process holding it
}

func (e *ConflictError) Error() string {
	how := "in use by"
	if strings.HasPrefix(e.Holder, "sandbox ") {
		how = "published by"
	}
	return fmt.Sprintf("host port %d/%s is already %s %s", e.Mapping.HostPort, e.Mapping.Protocol, how, e.Holder)
}

// conn opens one netlink socket in the node's namespace for all of a
// call's requests. It must be a lasting one: a transient Conn dials anew
// for each request with the namespace's fd, which is closed by then, and
// would act on whatever namespace that fd number names, if any.
func (r Rules) conn() (*nftables.Conn, error) {
	if r.NodeNetNS == "" {
		return nftables.New(nftables.AsLasting())
	}
	f, err := os.Open(r.NodeNetNS)
	if err != nil {
		return nil, fmt.Errorf("node netns %s: %w", r.NodeNetNS, err)
	}
	defer f.Close() // the socket, made now, stays in the namespace
	return nftables.New(nftables.WithNetNSFd(int(f.Fd())), nftables.AsLasting())
}

// inNode runs fn in the node's namespace: on a thread of its own when that
// is not the caller's.
func (r Rules) inNode(fn func() error) error {
	if r.NodeNetNS == "" {
		return fn()
	}
	return netsetup.InNetNS(r.NodeNetNS, fn)
}

func table() *nftables.Table {
	return &nftables.Table{Name: TableName, Family: nftables.TableFamilyIPv4}
}

// Add publishes ms for sandbox sandboxID, whose address is podIP: the
// table and its node-wide rules are made if missing, and every mapping is
// refused, with nothing added, if a rule of another sandbox holds its host
// port. Its rules and the table's are added in one transaction.
func (r Rules) Add(sandboxID string, podIP netip.Addr, ms []Mapping) error {
	if len(ms) == 0 {
		return nil
	}
	if r.Lock != "" {
		unlock, err := lockFile(r.Lock)
		if err != nil {
			return err
		}
		defer unlock()
	}
	c, err := r.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	existing, err := r.list(c)
	if err != nil {
		return err
	}
	for _, m := range ms {
		for _, p := range existing {
			if p.SandboxID != sandboxID && p.Mapping.Overlaps(m) {
				return &ConflictError{Mapping: m, Holder: "sandbox " + p.SandboxID}
			}
		}
	}
	// Connections from the node's loopback to a published port leave by
	// the bridge with a loopback source until masquerade rewrites it;
	// the kernel routes those only where route_localnet allows it.
	if err := r.inNode(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/conf/"+r.Bridge+"/route_localnet", []byte("1"), 0o644)
	}); err != nil {
		return fmt.Errorf("bridge %s: allow the node's loopback to published ports: %w", r.Bridge, err)
	}
	t, created := r.ensureTable(c)
	if err := r.ensureBridge(c, t, created); err != nil {
		return fmt.Errorf("publish ports of sandbox %s: %w", sandboxID, err)
	}
	ports := &nftables.Chain{Name: chainPorts, Table: t}
	for _, m := range ms {
		c.AddRule(&nftables.Rule{Table: t, Chain: ports, Exprs: dnat(m, podIP),
			UserData: userdataComment(comment(sandboxID, m, podIP))})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("publish ports of sandbox %s: nftables: %w", sandboxID, err)
	}
	return nil
}

// ensureTable queues the table, its chains and their jumps to ports,
// unless the table exists (it is only ever made whole, in one transaction);
// created says it queued them. Nothing in it names a bridge: the rules of
// each bridge are ensureBridge's.
func (r Rules) ensureTable(c *nftables.Conn) (_ *nftables.Table, created bool) {
	t := table()
	if _, err := c.ListTableOfFamily(TableName, nftables.TableFamilyIPv4); err == nil {
		return t, false
	}
	c.AddTable(t)
	ports := c.AddChain(&nftables.Chain{Name: chainPorts, Table: t})
	for _, hook := range []struct {
		name string
		num  *nftables.ChainHook
	}{{chainPrerouting, nftables.ChainHookPrerouting}, {chainOutput, nftables.ChainHookOutput}} {
		ch := c.AddChain(&nftables.Chain{Name: hook.name, Table: t, Type: nftables.ChainTypeNAT,
			Hooknum: hook.num, Priority: nftables.ChainPriorityNATDest})
		// fib daddr type local jump ports
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: nativeUint32(unix.RTN_LOCAL)},
			&expr.Verdict{Kind: expr.VerdictJump, Chain: ports.Name},
		}})
	}
	c.AddChain(&nftables.Chain{Name: chainPostrouting, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	return t, true
}

// Comments of a bridge's masquerade rules (bridgeRules).
const (
	hairpinComment  = "podbox hairpin on "
	loopbackComment = "podbox loopback on "
)

// bridgeRule is one postrouting rule that published ports need on a
// bridge, and the comment that names it.
type bridgeRule struct {
	comment string
	exprs   []expr.Any
}

// bridgeRules are the rules of r.Bridge.
func (r Rules) bridgeRules() []bridgeRule {
	return []bridgeRule{
		// A sandbox reaching a published port of its own node (hairpin):
		// the answer would go straight back over the bridge, not through
		// the node's connection tracking, unless the node is the source.
		// ct status dnat oifname BRIDGE ip saddr SUBNET masquerade
		{hairpinComment + r.Bridge + " from " + r.Subnet.Masked().String(), append(append(dnatted(), oifname(r.Bridge)...),
			append(saddrIn(r.Subnet), &expr.Masq{})...)},
		// The node's loopback: 127.0.0.1 is no source a sandbox can answer.
		// ct status dnat oifname BRIDGE ip saddr 127.0.0.0/8 masquerade
		{loopbackComment + r.Bridge, append(append(dnatted(), oifname(r.Bridge)...),
			append(saddrIn(netip.MustParsePrefix("127.0.0.0/8")), &expr.Masq{})...)},
	}
}

// ensureBridge queues r.Bridge's rules (bridgeRules) unless the postrouting
// chain has them as they are, and deletes any other rule that sends traffic
// out of r.Bridge: one for a subnet the bridge no longer has, a duplicate,
// or an uncommented one of an older podbox. Each bridge that sandboxes
// publish ports through has its own pair, so podbox's bridge and a CNI
// bridge (containerd's CRI pods) share the table; tableNew skips the look
// at a table queued in this transaction.
func (r Rules) ensureBridge(c *nftables.Conn, t *nftables.Table, tableNew bool) error {
	have := map[string]bool{}
	post := &nftables.Chain{Name: chainPostrouting, Table: t}
	if !tableNew {
		rules, err := c.GetRules(t, post)
		if err != nil {
			return fmt.Errorf("bridge %s: nftables: %w", r.Bridge, err)
		}
		want := map[string]bool{}
		for _, br := range r.bridgeRules() {
			want[br.comment] = true
		}
		for _, rule := range rules {
			if outBridge(rule) != r.Bridge {
				continue
			}
			s, _ := userdata.GetString(rule.UserData, userdata.TypeComment)
			if want[s] && !have[s] {
				have[s] = true
				continue
			}
			if err := c.DelRule(rule); err != nil {
				return fmt.Errorf("bridge %s: %w", r.Bridge, err)
			}
		}
	}
	for _, br := range r.bridgeRules() {
		if !have[br.comment] {
			c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: br.exprs, UserData: userdataComment(br.comment)})
		}
	}
	return nil
}

// outBridge is the interface a rule matches with `oifname NAME`, or "".
func outBridge(rule *nftables.Rule) string {
	for i, e := range rule.Exprs[:max(0, len(rule.Exprs)-1)] {
		m, ok := e.(*expr.Meta)
		if !ok || m.Key != expr.MetaKeyOIFNAME {
			continue
		}
		if cmp, ok := rule.Exprs[i+1].(*expr.Cmp); ok && cmp.Op == expr.CmpOpEq {
			return strings.TrimRight(string(cmp.Data), "\x00")
		}
	}
	return ""
}

// Remove deletes every forwarding rule of sandbox sandboxID; a node without
// the table or without such rules is fine.
func (r Rules) Remove(sandboxID string) error {
	c, err := r.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	rules, err := c.GetRules(table(), &nftables.Chain{Name: chainPorts, Table: table()})
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unpublish ports of sandbox %s: nftables: %w", sandboxID, err)
	}
	n := 0
	for _, rule := range rules {
		if p, ok := parseComment(rule.UserData); ok && p.SandboxID == sandboxID {
			if err := c.DelRule(rule); err != nil {
				return fmt.Errorf("unpublish ports of sandbox %s: %w", sandboxID, err)
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unpublish ports of sandbox %s: nftables: %w", sandboxID, err)
	}
	return nil
}

// List returns every published port of the node.
func (r Rules) List() ([]Published, error) {
	c, err := r.conn()
	if err != nil {
		return nil, err
	}
	defer c.CloseLasting()
	return r.list(c)
}

func (r Rules) list(c *nftables.Conn) ([]Published, error) {
	rules, err := c.GetRules(table(), &nftables.Chain{Name: chainPorts, Table: table()})
	if errors.Is(err, unix.ENOENT) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("published ports: nftables: %w", err)
	}
	var out []Published
	for _, rule := range rules {
		if p, ok := parseComment(rule.UserData); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// egressComment marks the egress rule of the postrouting chain.
const egressComment = "podbox egress"

// Egress makes traffic from the pod subnet to any address outside cluster
// (the node's pod CIDRs together, or the pod subnet alone) leave with the
// node's address, by masquerade, when on; pod-to-pod traffic, within the
// node or to other nodes' pods, is never translated. Off removes the rule.
// Either is idempotent.
func (r Rules) Egress(cluster netip.Prefix, on bool) error {
	c, err := r.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	t := table()
	post := &nftables.Chain{Name: chainPostrouting, Table: t}
	want := fmt.Sprintf("%s: %s to outside %s", egressComment, r.Subnet.Masked(), cluster.Masked())
	rules, err := c.GetRules(t, post)
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("egress: nftables: %w", err)
	}
	found, changed := false, false
	for _, rule := range rules {
		s, ok := userdata.GetString(rule.UserData, userdata.TypeComment)
		if !ok || !strings.HasPrefix(s, egressComment) {
			continue
		}
		if s == want && on {
			found = true
			continue
		}
		if err := c.DelRule(rule); err != nil {
			return fmt.Errorf("egress: %w", err)
		}
		changed = true
	}
	if on && !found {
		t, _ = r.ensureTable(c)
		// ip saddr SUBNET ip daddr != CLUSTER oifname != BRIDGE masquerade
		e := append(saddrIn(r.Subnet), daddrNotIn(cluster)...)
		e = append(e, notOifname(r.Bridge)...)
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: append(e, &expr.Masq{}), UserData: userdataComment(want)})
		changed = true
	}
	if !changed {
		return nil
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("egress: nftables: %w", err)
	}
	return nil
}

// Reset deletes podbox's table, with every rule in it.
func (r Rules) Reset() error {
	c, err := r.conn()
	if err != nil {
		return err
	}
	defer c.CloseLasting()
	if _, err := c.ListTableOfFamily(TableName, nftables.TableFamilyIPv4); err != nil {
		return nil // no table
	}
	c.DelTable(table())
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nftables: delete table ip %s: %w", TableName, err)
	}
	return nil
}

// dnat is `[ip daddr HOSTIP] meta l4proto PROTO th dport HOSTPORT dnat to
// PODIP:PORT`.
func dnat(m Mapping, podIP netip.Addr) []expr.Any {
	var e []expr.Any
	if m.HostIP.IsValid() {
		ip := m.HostIP.As4()
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ip[:]})
	}
	proto := byte(unix.IPPROTO_TCP)
	if m.Protocol == "udp" {
		proto = unix.IPPROTO_UDP
	}
	pod := podIP.As4()
	return append(e,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.BigEndian.AppendUint16(nil, m.HostPort)},
		&expr.Immediate{Register: 1, Data: pod[:]},
		&expr.Immediate{Register: 2, Data: binary.BigEndian.AppendUint16(nil, m.Port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
}

// ipsDstNAT is the conntrack status bit of a destination-NATed connection
// (IPS_DST_NAT in linux/netfilter/nf_conntrack_common.h).
const ipsDstNAT = 1 << 5

// dnatted is `ct status dnat`.
func dnatted() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: nativeUint32(ipsDstNAT), Xor: nativeUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: nativeUint32(0)},
	}
}

// oifname is `oifname NAME`.
func oifname(name string) []expr.Any { return oifnameCmp(name, expr.CmpOpEq) }

// notOifname is `oifname != NAME`.
func notOifname(name string) []expr.Any { return oifnameCmp(name, expr.CmpOpNeq) }

func oifnameCmp(name string, op expr.CmpOp) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: op, Register: 1, Data: b},
	}
}

// saddrIn is `ip saddr PREFIX`.
func saddrIn(p netip.Prefix) []expr.Any { return addrMatch(12, p, expr.CmpOpEq) }

// daddrNotIn is `ip daddr != PREFIX`.
func daddrNotIn(p netip.Prefix) []expr.Any { return addrMatch(16, p, expr.CmpOpNeq) }

// addrMatch compares the IPv4 address at offset (12 source, 16
// destination) of the network header with prefix p.
func addrMatch(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	p = p.Masked()
	addr := p.Addr().As4()
	mask := binary.BigEndian.AppendUint32(nil, ^uint32(0)<<(32-p.Bits()))
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: 1, Data: addr[:]},
	}
}

func nativeUint32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

func comment(sandboxID string, m Mapping, podIP netip.Addr) string {
	return fmt.Sprintf("%s%s %s to %s", commentPrefix, sandboxID, m, podIP)
}

// parseComment reads a forwarding rule's comment back; ok is false for a
// rule that is not one.
func parseComment(ud []byte) (Published, bool) {
	if !wellFormed(ud) {
		return Published{}, false
	}
	s, ok := userdata.GetString(ud, userdata.TypeComment)
	if !ok {
		return Published{}, false
	}
	rest, ok := strings.CutPrefix(s, commentPrefix)
	if !ok {
		return Published{}, false
	}
	f := strings.Fields(rest)
	if len(f) != 4 || f[2] != "to" {
		return Published{}, false
	}
	ms, err := Parse(f[1])
	if err != nil || len(ms) != 1 {
		return Published{}, false
	}
	ip, err := netip.ParseAddr(f[3])
	if err != nil {
		return Published{}, false
	}
	return Published{SandboxID: f[0], Mapping: ms[0], PodIP: ip}, true
}

// wellFormed reports whether every TLV of a rule's userdata holds the bytes
// its length says. userdata.Get slices by the length before it checks it,
// and the rules in podbox's table may come from any root process.
func wellFormed(ud []byte) bool {
	for len(ud) >= 2 {
		n := 2 + int(ud[1])
		if len(ud) < n {
			return false
		}
		ud = ud[n:]
	}
	return true
}

// lockFile takes an exclusive flock on path, waiting for it.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("published ports: lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("published ports: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

func userdataComment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

func nativePut(b []byte, v uint32) { binary.NativeEndian.PutUint32(b, v) }
