package shim

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/podbox/podbox/internal/faultpoint"
	"github.com/podbox/podbox/netsetup/nat"
	"github.com/podbox/podbox/netsetup/resolvconf"
	types "github.com/podbox/podbox/runtime/apitypes"
	sbapi "github.com/podbox/podbox/runtime/sandboxapi"
	"github.com/podbox/podbox/sandbox"
)

var _ sbapi.TTRPCSandboxService = (*Service)(nil)

// Annotations of CreateSandbox that carry podbox's sandbox options.
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
	// annSysctlPrefix + KEY sets sysctl KEY in the sandbox's namespaces.
	annSysctlPrefix = "io.podbox.sysctl."
)

// The sandbox states of SandboxStatus: containerd's sandbox store's, which
// its CRI reads as a pod's state.
const (
	stateReady    = "SANDBOX_READY"
	stateNotReady = "SANDBOX_NOTREADY"
)

func optionsFrom(req *sbapi.CreateSandboxRequest) (sandbox.Options, error) {
	a := req.Annotations
	o := sandbox.Options{
		ID: req.SandboxId, Name: a[annName], Hostname: a[annHostname], Network: a[annNetwork],
		NetNSPath: req.NetnsPath, Labels: map[string]string{},
	}
	switch a[annSharePID] {
	case "", "false":
	case "true":
		o.SharePID = true
	default:
		return o, fmt.Errorf("%w: %s=%q: want true or false", errInvalid, annSharePID, a[annSharePID])
	}
	for k, v := range a {
		if l, ok := strings.CutPrefix(k, annLabelPrefix); ok {
			o.Labels[l] = v
		}
		if key, ok := strings.CutPrefix(k, annSysctlPrefix); ok {
			if o.Sysctls == nil {
				o.Sysctls = map[string]string{}
			}
			o.Sysctls[key] = v
		}
	}
	if v := a[annPorts]; v != "" {
		ports, err := nat.ParseAll(strings.Split(v, ","))
		if err != nil {
			return o, fmt.Errorf("%w: %s: %v", errInvalid, annPorts, err)
		}
		o.Ports = ports
	}
	if v := a[annDNSServers]; v != "" {
		servers, err := resolvconf.ParseServers(strings.Split(v, ","))
		if err != nil {
			return o, fmt.Errorf("%w: %s: %v", errInvalid, annDNSServers, err)
		}
		o.DNS.Servers = servers
	}
	if v := a[annDNSSearches]; v != "" {
		o.DNS.Searches = strings.Split(v, ",")
	}
	if v := a[annDNSOptions]; v != "" {
		o.DNS.Options = strings.Split(v, ",")
	}
	o.CNIConfDir = a[annCNIConfDir]
	if v := a[annCNIBinDirs]; v != "" {
		o.CNIBinDirs = strings.Split(v, ",")
	}
	var err error
	if v := a[annMemory]; v != "" {
		if o.Resources.Memory, err = strconv.ParseInt(v, 10, 64); err != nil {
			return o, fmt.Errorf("%w: %s=%q: want bytes", errInvalid, annMemory, v)
		}
	}
	if v := a[annCPUs]; v != "" {
		if o.Resources.CPUs, err = strconv.ParseFloat(v, 64); err != nil {
			return o, fmt.Errorf("%w: %s=%q: want a decimal number of CPUs", errInvalid, annCPUs, v)
		}
	}
	if err := applyCRIPod(req, &o); err != nil {
		return o, err
	}
	for k := range o.Sysctls {
		if _, err := sandbox.SysctlNamespace(k); err != nil {
			return o, fmt.Errorf("%w: sandbox %q: %v", errInvalid, req.SandboxId, err)
		}
	}
	if req.NetnsPath != "" {
		if o.Network != "" && o.Network != sandbox.NetworkExternal {
			return o, fmt.Errorf("%w: network %q and a netns path %q", errInvalid, o.Network, req.NetnsPath)
		}
		o.Network = sandbox.NetworkExternal
	}
	if o.ID == "" || len(o.ID) > 76 || strings.ContainsAny(o.ID, "/\x00") || o.ID == "." || o.ID == ".." {
		return o, fmt.Errorf("%w: sandbox ID %q", errInvalid, o.ID)
	}
	return o, nil
}

// CreateSandbox builds the whole sandbox (see docs/shim-protocol.md): after
// it returns the pause runs and the network is up.
func (s *Service) CreateSandbox(ctx context.Context, req *sbapi.CreateSandboxRequest) (*sbapi.CreateSandboxResponse, error) {
	o, err := optionsFrom(req)
	if err != nil {
		return nil, toStatus(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.createSandbox(ctx, o); err != nil {
		return nil, toStatus(err)
	}
	return &sbapi.CreateSandboxResponse{}, nil
}

// createSandbox builds the shim's sandbox; s.mu is held.
func (s *Service) createSandbox(ctx context.Context, o sandbox.Options) error {
	if s.sb != nil {
		return fmt.Errorf("sandbox %q: %w: this shim already serves sandbox %q", o.ID, errState, s.sb.ID)
	}
	faultpoint.Point("shim.create.request")
	// The window keeps the pause's exit even if it dies before we claim it.
	w := s.reaper.Open()
	defer w.Close()
	sb, err := s.node.Create(ctx, o)
	if err != nil {
		return err
	}
	s.sb = sb
	s.pauseDone = make(chan struct{})
	go s.watchPause(sb, w.Claim(sb.PausePID), s.pauseDone)
	s.log.Info("sandbox created", "id", sb.ID, "name", sb.Name, "pause", sb.PausePID, "ip", sb.IP, "network", sb.Network)
	return nil
}

// current returns the served sandbox, checking that id names it.
func (s *Service) current(id string) (*sandbox.Sandbox, error) {
	if s.sb == nil || (id != "" && id != s.sb.ID) {
		return nil, fmt.Errorf("sandbox %q: %w", id, sandbox.ErrNotFound)
	}
	return s.sb, nil
}

func (s *Service) StartSandbox(ctx context.Context, req *sbapi.StartSandboxRequest) (*sbapi.StartSandboxResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, err := s.current(req.SandboxId)
	if err != nil {
		return nil, toStatus(err)
	}
	if sb.State != sandbox.StateReady {
		return nil, toStatus(fmt.Errorf("sandbox %q: %w: %s", sb.Name, errState, sb.State))
	}
	return &sbapi.StartSandboxResponse{Pid: uint32(sb.PausePID), CreatedAt: timestamppb.New(sb.CreatedAt)}, nil
}

func (s *Service) Platform(ctx context.Context, req *sbapi.PlatformRequest) (*sbapi.PlatformResponse, error) {
	return &sbapi.PlatformResponse{Platform: &types.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}}, nil
}

// StopSandbox stops the containers and then the pause; the sandbox stays
// (stopped) until ShutdownSandbox removes it.
func (s *Service) StopSandbox(ctx context.Context, req *sbapi.StopSandboxRequest) (*sbapi.StopSandboxResponse, error) {
	s.mu.Lock()
	sb, err := s.current(req.SandboxId)
	if err != nil {
		s.mu.Unlock()
		return nil, toStatus(err)
	}
	timeout := time.Duration(req.TimeoutSecs) * time.Second
	if req.TimeoutSecs == 0 {
		timeout = 10 * time.Second
	}
	// Mark it stopped first, so the pause's exit reads as requested rather
	// than as a crash.
	sb.State = sandbox.StateStopped
	done := s.pauseDone
	s.mu.Unlock()

	if err := s.stopContainers(ctx, timeout); err != nil {
		return nil, toStatus(err)
	}
	faultpoint.Point("shim.stop.containers")
	if err := sandbox.StopPause(sb, timeout); err != nil {
		return nil, toStatus(err)
	}
	faultpoint.Point("shim.stop.pause")
	select {
	case <-done:
	case <-ctx.Done():
		return nil, toStatus(ctx.Err())
	}
	// Containerd's CRI hands a pod's address back to CNI right after the
	// stop, and the next pod may get it: its ports must not follow.
	if err := s.node.UnpublishExternal(sb); err != nil {
		return nil, toStatus(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.node.Store.SaveSandbox(sb); err != nil {
		return nil, toStatus(err)
	}
	return &sbapi.StopSandboxResponse{}, nil
}

// WaitSandbox returns once the pause has exited.
func (s *Service) WaitSandbox(ctx context.Context, req *sbapi.WaitSandboxRequest) (*sbapi.WaitSandboxResponse, error) {
	s.mu.Lock()
	_, err := s.current(req.SandboxId)
	done := s.pauseDone
	s.mu.Unlock()
	if err != nil {
		return nil, toStatus(err)
	}
	select {
	case <-done:
	case <-ctx.Done():
		return nil, toStatus(ctx.Err())
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.sb.PauseExit
	return &sbapi.WaitSandboxResponse{ExitStatus: uint32(e.Status), ExitedAt: timestamppb.New(e.At)}, nil
}

func (s *Service) SandboxStatus(ctx context.Context, req *sbapi.SandboxStatusRequest) (*sbapi.SandboxStatusResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sb, err := s.current(req.SandboxId)
	if err != nil {
		return nil, toStatus(err)
	}
	// State speaks containerd's sandbox states, which its CRI maps to a
	// pod's (any other word reads as SANDBOX_NOTREADY: a kubelet would
	// restart a running pod); podbox's own is in Info.
	state := stateNotReady
	if sb.State == sandbox.StateReady {
		state = stateReady
	}
	resp := &sbapi.SandboxStatusResponse{
		SandboxId: sb.ID, Pid: uint32(sb.PausePID), State: state,
		CreatedAt: timestamppb.New(sb.CreatedAt),
		Info: map[string]string{
			"name": sb.Name, "hostname": sb.Hostname, "network": sb.Network, "netnsPath": sb.NetNSPath,
			"ip": sb.IP, "gateway": sb.Gateway, "bridge": sb.Bridge, "hostVeth": sb.HostVeth,
			"state": string(sb.State),
		},
	}
	if sb.PauseExit != nil {
		resp.ExitedAt = timestamppb.New(sb.PauseExit.At)
	}
	return resp, nil
}

func (s *Service) PingSandbox(ctx context.Context, req *sbapi.PingRequest) (*sbapi.PingResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, err := s.current(req.SandboxId); err != nil {
		return nil, toStatus(err)
	}
	return &sbapi.PingResponse{}, nil
}

// ShutdownSandbox removes every trace of the sandbox and ends the shim.
func (s *Service) ShutdownSandbox(ctx context.Context, req *sbapi.ShutdownSandboxRequest) (*sbapi.ShutdownSandboxResponse, error) {
	s.mu.Lock()
	sb := s.sb
	if sb != nil && req.SandboxId != "" && req.SandboxId != sb.ID {
		s.mu.Unlock()
		return nil, toStatus(fmt.Errorf("sandbox %q: %w", req.SandboxId, sandbox.ErrNotFound))
	}
	if sb != nil && sb.State == sandbox.StateReady {
		sb.State = sandbox.StateStopped
	}
	s.removing = sb != nil
	s.mu.Unlock()
	if sb != nil {
		err := s.stopContainers(ctx, 0)
		faultpoint.Point("shim.rm.containers")
		if err == nil {
			err = s.node.Remove(ctx, sb, s.deleter())
		}
		if err != nil {
			s.mu.Lock()
			s.removing = false
			s.mu.Unlock()
			return nil, toStatus(err)
		}
	}
	s.exitAfterAnswer(ctx)
	return &sbapi.ShutdownSandboxResponse{}, nil
}

// SandboxMetrics reports the cgroup metrics of the whole sandbox: the pause
// and every container podbox placed below the sandbox's cgroup.
func (s *Service) SandboxMetrics(ctx context.Context, req *sbapi.SandboxMetricsRequest) (*sbapi.SandboxMetricsResponse, error) {
	s.mu.Lock()
	sb, err := s.current(req.SandboxId)
	s.mu.Unlock()
	if err != nil {
		return nil, toStatus(err)
	}
	m, err := readMetric(sb.ID, sandbox.CgroupPaths{Path: s.node.SandboxCgroup(sb.ID).Path})
	if err != nil {
		return nil, toStatus(err)
	}
	return &sbapi.SandboxMetricsResponse{Metrics: m}, nil
}
