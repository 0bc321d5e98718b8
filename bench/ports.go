package main

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/podbox/podbox/bench/peer"
	"github.com/podbox/podbox/bench/report"
	"github.com/podbox/podbox/netsetup/nat"
)

// Host ports of the published-ports phase: podbox's sandboxes take them
// from hostPortBase, the peer's pods from hostPortBase + peerPortOffset, a
// fresh one for every sandbox and pod. All lie below Linux's ephemeral range
// (32768-60999), so no socket of the node (containerd's streaming server,
// crictl's connections) can hold one when podbox's create checks it.
const (
	hostPortBase   = 20000
	peerPortOffset = 6000
	// containerPort is the port published of each sandbox and pod;
	// nothing listens there: the phase measures the publishing.
	containerPort = 80
)

// ports measures published ports (issue #14), interleaved: `podbox sandbox
// create` plain and with `-p HOSTPORT:80`, and `crictl runp` of a pod with
// a port mapping while the peer's chain ends with portmap (peer.UsePortmap);
// then the removal of each (`sandbox rm -f`, `crictl stopp` + `rmp`).
// The plain create runs in the same rounds, so that what -p adds is
// measured under the same load. The first round checks that both podbox and
// portmap did publish (portsPublished); afterwards no published port of
// podbox, no portmap chain and no pod may be left (portsLeft), and the peer
// is back on its plain chain.
func (b *bench) ports(ctx context.Context) (err error) {
	restore, err := b.cri.UsePortmap(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// After ^C too: the peer's chain must not stay changed.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		err = errors.Join(err, restore(rctx))
	}()
	defer func() { err = errors.Join(err, b.portsLeft(ctx)) }()

	who := []string{report.Podbox, report.PodboxPorts, report.Peer}
	create, teardown := samples{}, samples{}
	for i := -b.cfg.warmup; i < b.cfg.runs; i++ {
		round := i + b.cfg.warmup
		hostPort := hostPortBase + round%peerPortOffset
		order := rotated(round, who...)
		ids := map[string]string{}
		var err error
		for _, w := range order {
			var id string
			var d time.Duration
			switch w {
			case report.Podbox:
				id, d, err = b.pb.Create(ctx)
			case report.PodboxPorts:
				id, d, err = b.pb.Create(ctx, "-p", fmt.Sprintf("%d:%d", hostPort, containerPort))
			case report.Peer:
				id, d, err = b.cri.RunPod(ctx, peer.PortMapping{HostPort: hostPort + peerPortOffset, ContainerPort: containerPort})
			}
			if err != nil {
				break
			}
			ids[w] = id
			if i >= 0 {
				create[w] = append(create[w], d)
			}
		}
		if round == 0 && err == nil {
			err = b.portsPublished(ctx, ids[report.PodboxPorts], hostPort, hostPort+peerPortOffset)
		}
		// Remove what this round made even when a create failed: a pod
		// with portmap must go before the chain is restored.
		for _, w := range order {
			if ids[w] == "" {
				continue
			}
			var d time.Duration
			var rerr error
			if w == report.Peer {
				d, rerr = b.cri.RemovePod(ctx, ids[w])
			} else {
				d, rerr = b.pb.Remove(ctx, ids[w])
			}
			err = errors.Join(err, rerr)
			if rerr == nil && i >= 0 {
				teardown[w] = append(teardown[w], d)
			}
		}
		if err != nil {
			return err
		}
	}
	b.addFigure(report.FigPorts, "sandbox create with a published port: podbox sandbox create / podbox sandbox create -p HOSTPORT:80 / crictl runp with port_mappings, portmap in the chain", create)
	b.addFigure(report.FigPortsTeardown, "teardown with a published port: podbox sandbox rm -f of a plain sandbox / of a -p sandbox / crictl stopp + rmp, portmap in the chain", teardown)
	return nil
}

// portsPublished checks, once, that the phase measures what it claims:
// podbox's -p sandbox has its forwarding rule for hostPort, and portmap
// made a DNAT rule for the peer pod's peerHostPort.
func (b *bench) portsPublished(ctx context.Context, sandboxID string, hostPort, peerHostPort int) error {
	published, err := nat.Rules{}.List()
	if err != nil {
		return fmt.Errorf("podbox: %w", err)
	}
	if !slices.ContainsFunc(published, func(p nat.Published) bool {
		return p.SandboxID == sandboxID && int(p.Mapping.HostPort) == hostPort
	}) {
		return fmt.Errorf("podbox: sandbox %s has no rule for host port %d; published: %v", sandboxID, hostPort, published)
	}
	table, err := natTable(ctx)
	if err != nil {
		return err
	}
	dport := fmt.Sprintf("--dport %d ", peerHostPort)
	for _, line := range strings.Split(table, "\n") {
		if strings.Contains(line, dport) && strings.Contains(line, "-j DNAT") {
			return nil
		}
	}
	return fmt.Errorf("peer: portmap made no DNAT rule for host port %d; the node's nat table:\n%s", peerHostPort, table)
}

// natTable is the node's iptables nat table, where portmap writes.
func natTable(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "iptables-save", "-t", "nat").Output()
	if err != nil {
		return "", fmt.Errorf("iptables-save -t nat: %w", err)
	}
	return string(out), nil
}

// portsLeft names what outlived the published-ports phase's removals:
// podbox's forwarding rules (its nftables table in the node), portmap's
// per-pod DNAT chains (CNI-DN-…, in the node's iptables nat table) and the
// peer's pods. The bench runs inside the node, so both tables are the
// node's.
func (b *bench) portsLeft(ctx context.Context) error {
	var left []string
	published, err := nat.Rules{}.List()
	if err != nil {
		left = append(left, "podbox: "+err.Error())
	}
	for _, p := range published {
		left = append(left, fmt.Sprintf("podbox: sandbox %s still publishes %s", p.SandboxID, p.Mapping))
	}
	table, err := natTable(ctx)
	if err != nil {
		left = append(left, "peer: "+err.Error())
	}
	for _, line := range strings.Split(table, "\n") {
		if strings.HasPrefix(line, ":CNI-DN-") {
			chain, _, _ := strings.Cut(line[1:], " ")
			left = append(left, fmt.Sprintf("peer: portmap chain %s left in the node's nat table", chain))
		}
	}
	pods, _, err := b.cri.Cmd(ctx, "pods", "-q")
	if err != nil {
		left = append(left, err.Error())
	} else if ids := strings.Fields(pods); len(ids) > 0 {
		left = append(left, "peer: pods left: "+strings.Join(ids, " "))
	}
	if len(left) > 0 {
		// One line: the result's errors are one line each.
		return fmt.Errorf("published ports left behind: %s", strings.Join(left, "; "))
	}
	return nil
}
