package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/podbox/podbox/netsetup/cni"
	"github.com/podbox/podbox/netsetup/nat"
	"github.com/podbox/podbox/netsetup/resolvconf"
)

// State is a sandbox's lifecycle state as users see it.
type State string

const (
	// StateCreating: the record exists, the shim is still building it.
	StateCreating State = "creating"
	// StateReady: the pause runs and the network is up.
	StateReady State = "ready"
	// StateNotReady: the pause or the shim died; containers are (being)
	// stopped and the sandbox waits for removal.
	StateNotReady State = "notready"
	// StateStopped: stopped on request; only removal remains.
	StateStopped State = "stopped"
	// StateBroken: the record cannot be read (Node.Salvage); only a
	// forced removal remains.
	StateBroken State = "broken"
)

// Network modes.
const (
	NetworkBridge = "bridge" // a veth on the node bridge and a leased address
	NetworkNone   = "none"   // a namespace with only lo
	// NetworkExternal: the caller (containerd's CRI, through CNI) made the
	// namespace; podbox neither sets it up nor tears it down.
	NetworkExternal = "external"
	// A network "cni:NAME" is the CNI network configuration list NAME,
	// run by package netsetup/cni in a namespace podbox owns.
)

// HostNamespaces are the node's namespaces a sandbox's pause stays in,
// rather than making one of its own.
type HostNamespaces struct {
	IPC bool `json:"ipc,omitempty"`
	UTS bool `json:"uts,omitempty"`
	PID bool `json:"pid,omitempty"`
}

// Sandbox is the record of one sandbox, as kept in sandbox.json and shown by
// `podbox sandbox inspect`.
type Sandbox struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Hostname string `json:"hostname"`
	Network  string `json:"network"`
	SharePID bool   `json:"sharePid"`
	// Host lists the node's namespaces the pause (and so every container
	// that joins it) shares.
	Host   HostNamespaces    `json:"hostNamespaces,omitzero"`
	Labels map[string]string `json:"labels,omitempty"`
	State  State             `json:"state"`

	PausePID int `json:"pausePid"`
	// PauseStart is the pause's start time in clock ticks since boot (field
	// 22 of /proc/PID/stat): with PausePID it names the process even after
	// the PID is reused, so a stale record never signals a stranger.
	PauseStart uint64 `json:"pauseStart,omitempty"`
	PauseExit  *Exit  `json:"pauseExit,omitempty"`

	NetNSPath string `json:"netnsPath"`
	IP        string `json:"ip,omitempty"`
	Gateway   string `json:"gateway,omitempty"`
	Bridge    string `json:"bridge,omitempty"`
	HostVeth  string `json:"hostVeth,omitempty"`
	// Ports are the host ports published to the sandbox (`-p`, or the
	// port mappings of a CRI pod); they are recorded before any rule
	// exists, so that a removal after a crash knows to look for them.
	Ports []nat.Mapping `json:"ports,omitempty"`
	// DNS is what the sandbox's resolv.conf says instead of the node's.
	DNS *resolvconf.Config `json:"dns,omitempty"`
	// CNI is the sandbox's attachment to its CNI network, recorded before
	// the chain's ADD so that a removal after a crash runs its DEL.
	CNI *cni.Attachment `json:"cni,omitempty"`
	// Resources are the sandbox's memory and CPU limits, on its cgroup.
	Resources *Resources `json:"resources,omitempty"`
	// Sysctls are what was set in the sandbox's namespaces at its create.
	Sysctls map[string]string `json:"sysctls,omitempty"`

	CgroupParent string `json:"cgroupParent"`
	ShimPID      int    `json:"shimPid,omitempty"`
	ShimAddress  string `json:"shimAddress,omitempty"`

	// Containers lists the IDs of the sandbox's container records. It is
	// not stored in the sandbox's record but read from the container
	// records' directories when the record is loaded: a container's create
	// or removal then rewrites only its own record, and the list cannot
	// disagree with the records.
	Containers []string  `json:"containers"`
	CreatedAt  time.Time `json:"createdAt"`

	// Problem says why a salvaged sandbox (StateBroken) has no record;
	// never stored.
	Problem string `json:"problem,omitempty"`
}

// Exit is how a process ended.
type Exit struct {
	Status int       `json:"status"`
	At     time.Time `json:"at"`
	// Reason is a container's exit as Kubernetes names it (ExitReason);
	// the pause's exit has none.
	Reason string `json:"reason,omitempty"`
}

// The reasons of a container's exit, Kubernetes' words for them.
const (
	ReasonCompleted = "Completed" // exit status 0
	ReasonError     = "Error"     // any other status
	ReasonOOMKilled = "OOMKilled" // the OOM killer acted in the container's cgroup
)

// ExitReason names a container's exit with status: OOMKilled when the OOM
// killer acted in its cgroup during the run, whatever the status (the
// victim may be a child of the init, which then fails), else Completed or
// Error.
func ExitReason(status int, oomKilled bool) string {
	switch {
	case oomKilled:
		return ReasonOOMKilled
	case status == 0:
		return ReasonCompleted
	}
	return ReasonError
}

// ContainerState is a container's lifecycle state.
type ContainerState string

const (
	ContainerCreated ContainerState = "created"
	ContainerRunning ContainerState = "running"
	ContainerStopped ContainerState = "stopped"
	// ContainerRestarting: exited, and its shim runs it again at
	// NextRestart (its restart policy says so).
	ContainerRestarting ContainerState = "restarting"
)

// Container is the record of one container joined to a sandbox, kept in
// container.json.
type Container struct {
	ID        string `json:"id"`
	Name      string `json:"name"`
	SandboxID string `json:"sandboxId"`
	// Config is what run was asked for besides the process (mounts,
	// limits, capabilities); nil if nothing.
	Config *ContainerConfig `json:"config,omitempty"`
	// Image is the name the container's image was asked for by, ImageID
	// the image's ID: what keeps `podbox image rm` from removing it.
	Image     string         `json:"image,omitempty"`
	ImageID   string         `json:"imageId,omitempty"`
	Rootfs    string         `json:"rootfs,omitempty"`
	Command   []string       `json:"command"`
	State     ContainerState `json:"state"`
	PID       int            `json:"pid,omitempty"`
	Exit      *Exit          `json:"exit,omitempty"`
	Bundle    string         `json:"bundle"`
	LogPath   string         `json:"logPath"`
	CreatedAt time.Time      `json:"createdAt"`

	// Restarts (podbox run --restart); Exit is then the last run's, also
	// while the next one runs.
	//
	// RestartPolicy is the container's restart policy, as package
	// runtime/restart spells it; empty when it has none.
	RestartPolicy string `json:"restartPolicy,omitempty"`
	// RestartCount is how many times its shim restarted the container.
	RestartCount int `json:"restartCount"`
	// NextRestart is when a restarting container runs again.
	NextRestart *time.Time `json:"nextRestart,omitempty"`
	// RestartError is why the shim could not restart the container, which
	// then stays stopped.
	RestartError string `json:"restartError,omitempty"`
}

// NewID returns a random 64-hex-digit ID, as containerd and runc use; users
// may type any unique prefix of it.
func NewID() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
