package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/podbox/podbox/netsetup/nat"
	"github.com/podbox/podbox/sandbox"
)

func checkFormat(f string) error {
	if f != "table" && f != "json" {
		return fmt.Errorf("--output %q: want table or json", f)
	}
	return nil
}

// writeList writes a listing the way ls and ps all do: only the IDs with
// -q, a JSON array (never null, so that `jq '.[]'` works on nothing) with
// -o json, else the table.
func writeList[T any](w io.Writer, items []T, quiet bool, format string, id func(T) string, table func() error) error {
	switch {
	case quiet:
		for _, it := range items {
			fmt.Fprintln(w, id(it))
		}
		return nil
	case format == "json":
		if items == nil {
			items = []T{}
		}
		return writeJSON(w, items)
	}
	return table()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// sandboxView is a sandbox record as shown to users: the record itself (its
// JSON names are the documented ones) with the state already corrected.
func sandboxView(sb *sandbox.Sandbox) *sandbox.Sandbox {
	if sb.Containers == nil {
		sb.Containers = []string{}
	}
	return sb
}

// sandboxViews is never null in JSON, so `jq '.[]'` works on an empty node.
func sandboxViews(sbs []*sandbox.Sandbox) []*sandbox.Sandbox {
	out := make([]*sandbox.Sandbox, 0, len(sbs))
	for _, sb := range sbs {
		out = append(out, sandboxView(sb))
	}
	return out
}

// portsColumn shows published ports as docker ps does: [HOSTIP:]HOSTPORT->PORT/PROTO.
func portsColumn(ms []nat.Mapping) string {
	parts := make([]string, len(ms))
	for i, m := range ms {
		host := strconv.Itoa(int(m.HostPort))
		if m.HostIP.IsValid() {
			host = m.HostIP.String() + ":" + host
		}
		parts[i] = fmt.Sprintf("%s->%d/%s", host, m.Port, m.Protocol)
	}
	return strings.Join(parts, ",")
}

func shortID(id string) string { return id[:min(12, len(id))] }

// ago renders how long before now t was, in the coarse units a listing
// needs.
func ago(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := now.Sub(t)
	switch {
	case d < time.Second:
		return "just now"
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s ago"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h ago"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d ago"
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func writeSandboxTable(w io.Writer, sbs []*sandbox.Sandbox, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "SANDBOX ID\tNAME\tSTATE\tIP\tPORTS\tCONTAINERS\tCREATED")
	for _, sb := range sbs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", shortID(sb.ID), sb.Name, sb.State, orDash(sb.IP), orDash(portsColumn(sb.Ports)),
			len(sb.Containers), ago(now, sb.CreatedAt))
	}
	return tw.Flush()
}

// containerView is a container as ps shows it: the record, its state as the
// shim reports it (or as the record says when the shim is gone), and the
// sandbox's name so scripts need no second lookup.
type containerView struct {
	sandbox.Container
	SandboxName string `json:"sandboxName"`
}

// commandLine quotes a command for a table column: arguments with spaces are
// quoted so the column still reads as one command.
func commandLine(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n\"'") {
			a = strconv.Quote(a)
		}
		q[i] = a
	}
	s := strings.Join(q, " ")
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// containerStatus is a container's STATE column: its state, with the
// last exit's status and reason once it has one, and when a restarting
// container runs again.
func containerStatus(c *sandbox.Container, now time.Time) string {
	s := string(c.State)
	if (c.State == sandbox.ContainerStopped || c.State == sandbox.ContainerRestarting) && c.Exit != nil {
		s += fmt.Sprintf(" (%d)", c.Exit.Status)
		if c.Exit.Reason != "" {
			s += " " + c.Exit.Reason
		}
	}
	if c.State == sandbox.ContainerRestarting && c.NextRestart != nil {
		s += ", in " + max(c.NextRestart.Sub(now), 0).Round(time.Second).String()
	}
	return s
}

func writeContainerTable(w io.Writer, cs []containerView, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER ID\tNAME\tSANDBOX\tSTATE\tRESTARTS\tCOMMAND\tCREATED")
	for _, c := range cs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", shortID(c.ID), c.Name, c.SandboxName, containerStatus(&c.Container, now), c.RestartCount,
			commandLine(c.Command), ago(now, c.CreatedAt))
	}
	return tw.Flush()
}
