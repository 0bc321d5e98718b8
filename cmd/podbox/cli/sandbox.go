package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podbox/podbox/internal/faultpoint"
	"github.com/podbox/podbox/netsetup/cni"
	"github.com/podbox/podbox/netsetup/nat"
	"github.com/podbox/podbox/netsetup/resolvconf"
	sbapi "github.com/podbox/podbox/runtime/sandboxapi"
	"github.com/podbox/podbox/runtime/shimclient"
	"github.com/podbox/podbox/sandbox"
)

// Annotations of CreateSandbox (docs/shim-protocol.md).
const (
	annName        = "io.podbox.name"
	annHostname    = "io.podbox.hostname"
	annNetwork     = "io.podbox.network"
	annSharePID    = "io.podbox.share-pid"
	annPorts       = "io.podbox.ports"
	annDNSServers  = "io.podbox.dns.servers"
	annDNSSearches = "io.podbox.dns.searches"
	annDNSOptions  = "io.podbox.dns.options"
	annCNIConfDir  = "io.podbox.cni.conf-dir"
	annCNIBinDirs  = "io.podbox.cni.bin-dirs"
	annMemory      = "io.podbox.memory"
	annCPUs        = "io.podbox.cpus"
	annLabelPrefix = "io.podbox.label."
)

func (a *App) sandboxCommand(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "sandbox",
		Aliases: []string{"sb"},
		Short:   "Create, list, inspect, stop and remove sandboxes",
		Long: `A sandbox is a pod: a network, IPC and UTS namespace owned by a pause
process, with its own address on the podbox0 bridge. Containers started with
` + "`podbox run --sandbox`" + ` join it and share localhost.`,
		Example: `  podbox sandbox create --name web
  podbox sandbox ls
  podbox sandbox rm -f web`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(a.sandboxCreateCommand(g), a.sandboxLsCommand(g), a.sandboxInspectCommand(g),
		a.sandboxStopCommand(g), a.sandboxRmCommand(g))
	return cmd
}

// createOptions are the validated inputs of `sandbox create`.
type createOptions struct {
	name, hostname, network string
	sharePID                bool
	labels                  []string
	ports                   []string // -p, as given
	dns, dnsSearch, dnsOpt  []string
	cniConfDir, cniBinDir   string
	memory, cpus            string // the sandbox's limits, as given

	sysctls []string // --sysctl KEY=VALUE, as given
}

// dnsConfig is the sandbox's resolver settings from the flags.
func (o createOptions) dnsConfig() (resolvconf.Config, error) {
	servers, err := resolvconf.ParseServers(o.dns)
	if err != nil {
		return resolvconf.Config{}, err
	}
	c := resolvconf.Config{Servers: servers, Searches: o.dnsSearch, Options: o.dnsOpt}
	return c, c.Validate()
}

// annotations turns o into CreateSandbox's annotations for sandbox id.
func (o createOptions) annotations(id string) (map[string]string, error) {
	name := o.name
	if name == "" {
		name = id[:12]
	}
	ann := map[string]string{annName: name, annNetwork: o.network}
	if o.hostname != "" {
		ann[annHostname] = o.hostname
	}
	if o.sharePID {
		ann[annSharePID] = "true"
	}
	labels, err := parseKeyValues("--label", o.labels)
	if err != nil {
		return nil, err
	}
	for k, v := range labels {
		ann[annLabelPrefix+k] = v
	}
	ports, err := nat.ParseAll(o.ports)
	if err != nil {
		return nil, err
	}
	if len(ports) > 0 {
		specs := make([]string, len(ports))
		for i, p := range ports {
			specs[i] = p.String()
		}
		ann[annPorts] = strings.Join(specs, ",")
	}
	if len(o.dns) > 0 {
		ann[annDNSServers] = strings.Join(o.dns, ",")
	}
	if len(o.dnsSearch) > 0 {
		ann[annDNSSearches] = strings.Join(o.dnsSearch, ",")
	}
	if len(o.dnsOpt) > 0 {
		ann[annDNSOptions] = strings.Join(o.dnsOpt, ",")
	}
	if _, isCNI, _ := cni.ParseNetwork(o.network); isCNI {
		ann[annCNIConfDir] = o.cniConfDir
		ann[annCNIBinDirs] = strings.Join(cni.SplitBinPath(o.cniBinDir), ",")
	}
	if err := o.limitAnnotations(ann); err != nil {
		return nil, err
	}
	if err := o.sysctlAnnotations(ann); err != nil {
		return nil, err
	}
	return ann, nil
}

// validate checks everything the shim would reject, so bad input fails
// before any shim starts.
func (o createOptions) validate() error {
	if o.name != "" {
		if err := sandbox.ValidName("sandbox", o.name); err != nil {
			return err
		}
	}
	if o.hostname != "" && (len(o.hostname) > 63 || strings.ContainsAny(o.hostname, "/ \t\n") || strings.HasPrefix(o.hostname, "-")) {
		return fmt.Errorf("--hostname %q is invalid: use at most 63 characters, no spaces or slashes", o.hostname)
	}
	_, isCNI, err := cni.ParseNetwork(o.network)
	switch {
	case err != nil:
		return fmt.Errorf("--network %q: %w", o.network, err)
	case isCNI:
		if !filepath.IsAbs(o.cniConfDir) {
			return fmt.Errorf("--cni-conf-dir %q: want an absolute path", o.cniConfDir)
		}
		dirs := cni.SplitBinPath(o.cniBinDir)
		if len(dirs) == 0 {
			return fmt.Errorf("--cni-bin-dir %q: want one or more directories", o.cniBinDir)
		}
		for _, d := range dirs {
			if !filepath.IsAbs(d) {
				return fmt.Errorf("--cni-bin-dir %q: %q is not an absolute path", o.cniBinDir, d)
			}
		}
	case o.network == sandbox.NetworkBridge, o.network == sandbox.NetworkNone:
	default:
		return fmt.Errorf("--network %q: want %s, %s or %sNAME", o.network, sandbox.NetworkBridge, sandbox.NetworkNone, cni.NetworkPrefix)
	}
	if _, err := parseKeyValues("--label", o.labels); err != nil {
		return err
	}
	if len(o.ports) > 0 && o.network != sandbox.NetworkBridge && !isCNI {
		return fmt.Errorf("-p: published ports need --network %s or a CNI network with the portmap plugin", sandbox.NetworkBridge)
	}
	if _, err := nat.ParseAll(o.ports); err != nil {
		return err
	}
	if err := o.limitAnnotations(map[string]string{}); err != nil {
		return err
	}
	if _, err := parseSysctls(o.sysctls); err != nil {
		return err
	}
	_, err = o.dnsConfig()
	return err
}

// parseKeyValues parses K=V pairs; K must be non-empty and V may be empty.
func parseKeyValues(flag string, kvs []string) (map[string]string, error) {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" || strings.ContainsAny(k, " \t\n") {
			return nil, fmt.Errorf("%s %q: want KEY=VALUE", flag, kv)
		}
		m[k] = v
	}
	return m, nil
}

func (a *App) sandboxCreateCommand(g *globals) *cobra.Command {
	var o createOptions
	cmd := &cobra.Command{
		Use:   "create [flags]",
		Short: "Create a sandbox and print its ID",
		Long: `Create a sandbox: start its shim, which builds the network namespace,
network, hosts files, cgroup and pause process. Prints the new sandbox's ID.
On failure nothing is left behind.

-p publishes a port of the sandbox on the node (nftables rules in podbox's
own table): reachable from other hosts at the node's addresses, from the
node itself (localhost too) and from other sandboxes through the node's
address. The sandbox's /etc/resolv.conf is the node's, with a local stub
resolver's loopback address replaced by the servers it forwards to, unless
--dns, --dns-search or --dns-option say otherwise.

--network cni:NAME attaches the sandbox with the CNI network configuration
list NAME from --cni-conf-dir, run by libcni (in podbox-cni) with plugins
from --cni-bin-dir: ADD at create, CHECK at 'sandbox inspect --check', DEL at
removal, from what was cached at ADD, also after a crash. Its ports go to
the plugins with the portMappings capability (portmap) of the list.

--memory and --cpus limit the whole sandbox, as a pod's limits do in
Kubernetes: they are set on the sandbox's cgroup, which holds the pause's
and every container's cgroup, so the sum of its containers cannot go past
them whatever each container's own limit (podbox run --memory, --cpus).
Memory: 512m, 1g, 512Mi or 1Gi (binary units whatever the case), at least
6m, swap included. CPUs: a decimal number (0.5 is half of one CPU's time,
a CFS quota of 50 ms per 100 ms) or millicores (500m), at most the node's.

--sysctl sets a sysctl in the sandbox's namespaces before any container
joins it, as a pod's sysctls: net.* (its network), kernel.shm*, kernel.msg*,
kernel.sem, fs.mqueue.* (its IPC) and kernel.domainname (its UTS
namespace). Others would change the node and are refused.`,
		Example: `  podbox sandbox create --name web --label app=shop
  podbox sandbox create --name web -p 8080:80 -p 127.0.0.1:5353:53/udp
  podbox sandbox create --network none --share-pid
  podbox sandbox create --network cni:mynet -p 8080:80
  podbox sandbox create --name db --memory 1g --cpus 1.5
  podbox sandbox create --name db --sysctl kernel.shm_rmid_forced=1 --sysctl net.ipv4.ip_local_port_range="20000 30000"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.sandboxCreate(cmd.Context(), g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "sandbox name (default: the first 12 digits of the ID)")
	f.StringVar(&o.hostname, "hostname", "", "hostname inside the sandbox (default: the name)")
	f.StringVar(&o.network, "network", sandbox.NetworkBridge, "network: bridge (an address on the podbox0 bridge), none (loopback only) or cni:NAME (a CNI network configuration list)")
	f.StringVar(&o.cniConfDir, "cni-conf-dir", cni.DefaultConfDir, "where --network cni:NAME finds its configuration list")
	f.StringVar(&o.cniBinDir, "cni-bin-dir", cni.DefaultBinPath, "where --network cni:NAME finds its plugins (directories separated by ':')")
	f.BoolVar(&o.sharePID, "share-pid", false, "share one PID namespace between all containers of the sandbox")
	f.StringArrayVar(&o.labels, "label", nil, "label KEY=VALUE (repeatable)")
	f.StringArrayVarP(&o.ports, "publish", "p", nil, "publish a port on the node: [HOSTIP:]HOSTPORT:PORT[/tcp|/udp], ranges as 8000-8010:8000-8010 (repeatable)")
	f.StringArrayVar(&o.dns, "dns", nil, "name server for the sandbox's resolv.conf, instead of the node's (repeatable)")
	f.StringArrayVar(&o.dnsSearch, "dns-search", nil, "search domain for the sandbox's resolv.conf, instead of the node's (repeatable)")
	f.StringArrayVar(&o.dnsOpt, "dns-option", nil, "resolver option such as ndots:2, instead of the node's (repeatable)")
	f.StringVar(&o.memory, "memory", "", "memory limit of the whole sandbox, swap included: 512m, 1g, 512Mi, 1Gi (at least 6m)")
	f.StringVar(&o.cpus, "cpus", "", "CPU limit of the whole sandbox in CPUs: 0.5, 2 (or 500m)")
	f.StringArrayVar(&o.sysctls, "sysctl", nil, "sysctl KEY=VALUE in the sandbox's network, IPC or UTS namespace (repeatable)")
	return cmd
}

func (a *App) sandboxCreate(ctx context.Context, g *globals, o createOptions) error {
	display := o.name
	if display == "" {
		display = "(unnamed)"
	}
	fail := func(err error) error { return objErr("sandbox", display, "create", err) }
	if err := o.validate(); err != nil {
		return fail(err)
	}
	st := g.store()
	if o.name != "" {
		if sb, err := st.ResolveSandbox(o.name); err == nil && sb.Name == o.name {
			return fail(nameInUse(st, o.name))
		}
	}
	// Taken ports are refused before the sandbox is built, by a check that
	// runs meanwhile the shim starts (it reads the node's nftables table and
	// sockets, a few hundred microseconds a create with -p need not wait
	// for); the shim checks again, under the ports lock, as it publishes.
	portsFree := make(chan error, 1)
	if _, isCNI, _ := cni.ParseNetwork(o.network); len(o.ports) > 0 && !isCNI {
		go func() { portsFree <- checkPortsFree(st, o) }()
	} else {
		portsFree <- nil
	}
	shim, err := a.shimBinary()
	if err != nil {
		return fail(err)
	}
	id := sandbox.NewID()
	if o.name == "" {
		display = id[:12]
	}
	ann, err := o.annotations(id)
	if err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(g.root, 0o700); err != nil {
		return fail(fmt.Errorf("state root: %w", err))
	}

	// ^C while the shim builds must still end in ShutdownSandbox, or a
	// half-built sandbox would stay behind. Catching it (os/signal's
	// Notify starts a thread of its own first) takes a quarter of a
	// millisecond, so it is set up meanwhile the shim process starts, and
	// before anything else is made: until it is in place, ^C ends the CLI
	// with nothing made but perhaps the shim, which exits by itself when
	// nobody connects (shim.Config.ConnectGrace).
	//
	// The sandbox's network namespace is made here too, meanwhile the shim
	// process starts, and the shim adopts it (sandbox.Node.PrepareNetNS):
	// its creation is then off the way to a ready sandbox. Should it fail,
	// the shim makes one itself. Whatever ends the create early discards it.
	node := sandbox.Node{Store: st}
	type catcher struct {
		ctx  context.Context // cancelled by ^C or SIGTERM
		stop context.CancelFunc
	}
	caught := make(chan catcher, 1)
	prep := make(chan error, 1)
	go func() {
		c, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		caught <- catcher{c, stop}
		prep <- node.PrepareNetNS(id)
	}()
	sig := sync.OnceValue(func() catcher { return <-caught })
	defer func() { sig().stop() }()
	prepared := sync.OnceValue(func() error { return <-prep })
	discard := func(err error) error {
		prepared()
		if derr := node.DiscardNetNS(id); derr != nil {
			err = errors.Join(err, derr)
		}
		return err
	}

	g.log.Debug("start shim", "shim", shim, "sandbox", id)
	// The bootstrap runs here rather than in a `shim start` process: one
	// process start less on the way to a ready sandbox.
	addr, err := shimclient.Launch(shimclient.Options{
		Binary: shim, Root: g.root, ID: id, Runtime: g.runtime,
		CgroupParent: a.Getenv(shimclient.EnvCgroupParent), Pause: a.Getenv(shimclient.EnvPause),
		Debug: g.debug(),
	})
	if err != nil {
		return discard(fail(err))
	}
	faultpoint.Point("cli.create.shim-started")
	ctx = sig().ctx
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	c, err := shimclient.Dial(dctx, addr)
	cancel()
	if err != nil {
		// A shim we cannot reach cannot be told to shut down; it holds no
		// sandbox yet. One that died first said why in its log.
		if msg := shimclient.LastLog(addr); msg != "" {
			err = fmt.Errorf("shim exited: %s", msg)
		}
		return discard(errors.Join(fail(err), a.removeAfterDeadShim(ctx, g, id, addr)))
	}
	defer c.Close()

	// The namespace must be complete before the shim looks for it, or both
	// would make one.
	if err := prepared(); err != nil {
		g.log.Debug("prepare network namespace: the shim makes it", "sandbox", id, "error", err)
	}
	faultpoint.Point("cli.create.netns-prepared")
	if err := <-portsFree; err != nil {
		// The shim holds nothing yet: it exits when this connection goes
		// without a sandbox (shim.Config.ConnectGrace), and Shutdown makes
		// that now.
		_, _ = c.Sandbox.ShutdownSandbox(ctx, &sbapi.ShutdownSandboxRequest{SandboxId: id})
		return discard(fail(err))
	}
	g.log.Debug("create sandbox", "sandbox", id, "address", addr, "annotations", ann)
	// No StartSandbox after it, as containerd sends: podbox's CreateSandbox
	// returns a ready sandbox, and Start would only echo the pause's PID, a
	// round trip on every create.
	_, err = c.Sandbox.CreateSandbox(ctx, &sbapi.CreateSandboxRequest{SandboxId: id, Annotations: ann})
	faultpoint.Point("cli.create.answered")
	if err != nil {
		if isClosed(err) {
			// The shim died before it answered: its log says why, and
			// nobody but us will undo what it made.
			if msg := shimclient.LastLog(addr); msg != "" {
				err = fmt.Errorf("shim exited: %s", msg)
			} else {
				err = fmt.Errorf("shim died before the sandbox was ready (%w); what it made is removed", err)
			}
			return discard(errors.Join(fail(err), a.removeAfterDeadShim(ctx, g, id, addr)))
		}
		if o.name != "" && status.Code(err) == codes.AlreadyExists && strings.Contains(rpcMessage(err), sandbox.ErrNameInUse.Error()) {
			// Another create of the name won the race past the check
			// above: the same refusal as if it had come first.
			err = nameInUse(st, o.name)
		}
		err = fail(err)
		// Undo with a context of its own: the caller's may be what was
		// cancelled.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		if _, serr := c.Sandbox.ShutdownSandbox(sctx, &sbapi.ShutdownSandboxRequest{SandboxId: id}); serr != nil && !isClosed(serr) {
			err = errors.Join(err, fmt.Errorf("shut down shim: %s", rpcMessage(serr)))
		}
		// A create refused before the shim took the namespace (a name in
		// use) leaves it to us.
		return discard(err)
	}
	faultpoint.Point("cli.create.created")
	fmt.Fprintln(a.Stdout, id)
	return nil
}

// nameInUse refuses a sandbox name that another sandbox holds, naming it.
func nameInUse(st sandbox.Store, name string) error {
	if id, err := st.SandboxNameHolder(name); err == nil && len(id) >= 12 {
		return fmt.Errorf("name is already used by sandbox %s", id[:12])
	}
	return errors.New("name is already used by another sandbox")
}

// removeAfterDeadShim removes what the shim of sandbox id, which died
// while it created the sandbox, made of it: the sandbox as far as it got
// (offline, as `sandbox rm -f` would), and the shim's socket and log.
func (a *App) removeAfterDeadShim(ctx context.Context, g *globals, id, addr string) error {
	// A shim that closed the connection is dead or dying; one that is
	// not must not build on while we remove.
	if pid := findShim(id); pid > 0 {
		killHungShim(&sandbox.Sandbox{ID: id, ShimPID: pid})
	}
	ctx = context.WithoutCancel(ctx)
	sb, err := g.store().LoadSandbox(id)
	switch {
	case errors.Is(err, sandbox.ErrNotFound):
		sock := strings.TrimPrefix(addr, "unix://")
		for _, p := range []string{sock, sock + ".log"} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("remove the dead shim's socket: %w", err)
			}
		}
		return nil
	case errors.Is(err, sandbox.ErrCorrupt):
		sb = sandbox.Node{Store: g.store()}.Salvage(id, err)
	case err != nil:
		return err
	}
	return a.removeOffline(ctx, g, sb)
}

// checkPortsFree refuses published ports that are taken, before anything
// is built; the shim checks again when it publishes them. A sandbox that
// holds one is named by its name.
func checkPortsFree(st sandbox.Store, o createOptions) error {
	ports, err := nat.ParseAll(o.ports)
	if err != nil {
		return err
	}
	rules, err := sandbox.Node{Store: st}.PortRules()
	if err != nil {
		return err
	}
	err = rules.CheckFree(ports)
	var ce *nat.ConflictError
	if errors.As(err, &ce) {
		if id, ok := strings.CutPrefix(ce.Holder, "sandbox "); ok {
			if sb, lerr := st.LoadSandbox(id); lerr == nil {
				ce.Holder = fmt.Sprintf("sandbox %q", sb.Name)
			}
		}
	}
	return err
}

// sandboxState is the state to show for sb: the record's, except that a
// sandbox whose shim or pause died is notready whatever the record says
// (nobody is left to update it after a kill -9).
func sandboxState(sb *sandbox.Sandbox) sandbox.State {
	switch sb.State {
	case sandbox.StateReady:
		if !shimAlive(sb) || !sandbox.Alive(sb.PausePID, sb.PauseStart) {
			return sandbox.StateNotReady
		}
	case sandbox.StateCreating:
		if !shimAlive(sb) {
			return sandbox.StateNotReady
		}
	}
	return sb.State
}

// loadSandboxes reads every sandbox record, oldest first, with corrected
// states. A directory without a record (a create in progress) is skipped.
func loadSandboxes(st sandbox.Store) ([]*sandbox.Sandbox, error) {
	ids, err := st.SandboxIDs()
	if err != nil {
		return nil, err
	}
	var sbs []*sandbox.Sandbox
	for _, id := range ids {
		sb, err := st.LoadSandbox(id)
		if errors.Is(err, sandbox.ErrNotFound) {
			continue
		}
		if errors.Is(err, sandbox.ErrCorrupt) {
			// One unreadable record must not hide the others: it is
			// listed as broken, for `sandbox rm -f` to remove.
			sbs = append(sbs, sandbox.Node{Store: st}.Salvage(id, err))
			continue
		}
		if err != nil {
			return nil, err
		}
		sb.State = sandboxState(sb)
		sbs = append(sbs, sb)
	}
	slices.SortFunc(sbs, func(x, y *sandbox.Sandbox) int { return x.CreatedAt.Compare(y.CreatedAt) })
	return sbs, nil
}

// resolveSandbox finds the sandbox ref names, with its state corrected.
func resolveSandbox(st sandbox.Store, ref string) (*sandbox.Sandbox, error) {
	sb, err := st.ResolveSandbox(ref)
	if errors.Is(err, sandbox.ErrCorrupt) {
		// What can be known of it without its record: enough to show it
		// and to remove it with -f.
		id, _ := st.ResolveSandboxID(ref)
		return sandbox.Node{Store: st}.Salvage(id, err), nil
	}
	if err != nil {
		return nil, err
	}
	sb.State = sandboxState(sb)
	return sb, nil
}

func (a *App) sandboxLsCommand(g *globals) *cobra.Command {
	var quiet bool
	var format string
	cmd := &cobra.Command{
		Use:     "ls [flags]",
		Aliases: []string{"list"},
		Short:   "List sandboxes",
		Long: `List every sandbox under the state root. A sandbox whose shim or pause
process has died shows as notready.`,
		Example: `  podbox sandbox ls
  podbox sandbox ls -q | xargs podbox sandbox rm -f
  podbox sandbox ls -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			sbs, err := loadSandboxes(g.store())
			if err != nil {
				return err
			}
			return writeList(a.Stdout, sandboxViews(sbs), quiet, format, func(sb *sandbox.Sandbox) string { return sb.ID },
				func() error { return writeSandboxTable(a.Stdout, sbs, a.Now()) })
		},
	}
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only IDs")
	cmd.Flags().StringVarP(&format, "output", "o", "table", "output format: table or json")
	return cmd
}

func (a *App) sandboxInspectCommand(g *globals) *cobra.Command {
	var check bool
	cmd := &cobra.Command{
		Use:   "inspect SANDBOX [flags]",
		Short: "Show a sandbox's record as JSON",
		Long: `Print the sandbox's record as JSON: id, name, state, pausePid, netnsPath,
ip, gateway, bridge, hostVeth, ports, dns, cni, containers, createdAt and
more. SANDBOX is a name, an ID or a unique ID prefix.

--check also asks the network whether the sandbox is still attached as it
was made and adds the answer as networkCheck: for a CNI network the chain's
CHECK (and its cached result), for the bridge network the veth on the
bridge, the address on eth0 and the published ports' rules. A failed check
exits 1 after printing.`,
		Example: `  podbox sandbox inspect web
  podbox sandbox inspect web | jq -r .ip
  podbox sandbox inspect --check web | jq .networkCheck`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sb, err := resolveSandbox(g.store(), args[0])
			if err != nil {
				return err
			}
			if !check {
				return writeJSON(a.Stdout, sandboxView(sb))
			}
			res, cerr := sandbox.Node{Store: g.store()}.CheckNetwork(cmd.Context(), sb)
			nc := &networkCheck{OK: cerr == nil, CNI: res}
			if cerr != nil {
				nc.Error = cerr.Error()
			}
			if err := writeJSON(a.Stdout, checkedView{sandboxView(sb), nc}); err != nil {
				return err
			}
			if cerr != nil {
				return objErr("sandbox", sb.Name, "check network", cerr)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&check, "check", false, "check the sandbox's network attachment (CNI CHECK for CNI networks)")
	return cmd
}

// networkCheck is the answer of `inspect --check`.
type networkCheck struct {
	OK    bool        `json:"ok"`
	Error string      `json:"error,omitempty"`
	CNI   *cni.Result `json:"cniResult,omitempty"`
}

// checkedView is a sandbox's record with its network check.
type checkedView struct {
	*sandbox.Sandbox
	NetworkCheck *networkCheck `json:"networkCheck"`
}

func (a *App) sandboxStopCommand(g *globals) *cobra.Command {
	var timeout uint32
	cmd := &cobra.Command{
		Use:   "stop SANDBOX [flags]",
		Short: "Stop a sandbox's containers and its pause",
		Long: `Stop every container of the sandbox (SIGTERM, then SIGKILL after the
timeout), then its pause process. The sandbox stays listed as stopped until
it is removed.`,
		Example: `  podbox sandbox stop web
  podbox sandbox stop --timeout 2 web`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sb, err := resolveSandbox(g.store(), args[0])
			if err != nil {
				return err
			}
			c, err := g.dial(cmd.Context(), sb)
			if err != nil {
				return err
			}
			defer c.Close()
			if _, err := c.Sandbox.StopSandbox(cmd.Context(), &sbapi.StopSandboxRequest{SandboxId: sb.ID, TimeoutSecs: timeout}); err != nil {
				return objErr("sandbox", sb.Name, "stop", err)
			}
			return nil
		},
	}
	cmd.Flags().Uint32Var(&timeout, "timeout", 10, "seconds to wait after SIGTERM before SIGKILL")
	return cmd
}

func (a *App) sandboxRmCommand(g *globals) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:     "rm SANDBOX... [flags]",
		Aliases: []string{"remove"},
		Short:   "Remove sandboxes and everything in them",
		Long: `Remove sandboxes: their containers, pause, cgroup, network and state. A
ready sandbox is refused unless -f is given. A sandbox whose shim has died is
removed without it.`,
		Example: `  podbox sandbox stop web && podbox sandbox rm web
  podbox sandbox rm -f web db`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st := g.store()
			// Resolve and check every argument first: a typo in the third
			// name must not leave the first two removed.
			var sbs []*sandbox.Sandbox
			for _, ref := range args {
				sb, err := resolveSandbox(st, ref)
				if err != nil {
					return err
				}
				if sb.State == sandbox.StateReady && !force {
					return fmt.Errorf("sandbox %q: remove: sandbox is ready; stop it first or use -f", sb.Name)
				}
				if sb.State == sandbox.StateBroken && !force {
					return fmt.Errorf("sandbox %q: remove: %s; -f removes what is left of it", sb.Name, sb.Problem)
				}
				sbs = append(sbs, sb)
			}
			var errs []error
			for _, sb := range sbs {
				if err := a.removeSandbox(cmd.Context(), g, sb); err != nil {
					errs = append(errs, err)
				}
			}
			return errors.Join(errs...)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "remove even a ready sandbox, stopping its containers")
	return cmd
}

// pingTimeout bounds the liveness check of a shim before removal: one that
// does not answer in this long is treated as dead.
const pingTimeout = 3 * time.Second

// removeSandbox asks sb's shim to remove it, or removes it offline if the
// shim is dead or does not answer.
func (a *App) removeSandbox(ctx context.Context, g *globals, sb *sandbox.Sandbox) error {
	if sb.State == sandbox.StateBroken {
		// The record with the shim's PID is what was lost; a shim that
		// still runs still knows its sandbox and removes it best.
		sb.ShimPID = findShim(sb.ID)
	}
	if shimAlive(sb) {
		if c, err := g.dial(ctx, sb); err == nil {
			defer c.Close()
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			_, err = c.Sandbox.PingSandbox(pctx, &sbapi.PingRequest{SandboxId: sb.ID})
			cancel()
			if err == nil {
				g.log.Debug("shutdown sandbox", "sandbox", sb.ID)
				_, err := c.Sandbox.ShutdownSandbox(ctx, &sbapi.ShutdownSandboxRequest{SandboxId: sb.ID})
				if err != nil && !isClosed(err) {
					return objErr("sandbox", sb.Name, "remove", err)
				}
				// A shim that exits right after its answer may close the
				// connection first; one that died in the middle of the
				// removal closes it too, and leaves the record, the last
				// thing a removal deletes: the rest is removed here.
				if _, serr := os.Stat(g.store().SandboxDir(sb.ID)); err == nil || errors.Is(serr, os.ErrNotExist) {
					return nil
				}
				g.log.Debug("shim died while it removed the sandbox; removing offline", "sandbox", sb.ID)
				killHungShim(sb)
				return a.removeOffline(ctx, g, sb)
			}
			g.log.Debug("shim does not serve the sandbox; removing offline", "sandbox", sb.ID, "err", err)
			if !shimAnswered(err) {
				killHungShim(sb)
			}
		} else {
			killHungShim(sb)
		}
	}
	return a.removeOffline(ctx, g, sb)
}
