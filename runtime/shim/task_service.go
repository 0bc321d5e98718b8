package shim

import (
	"context"
	"fmt"
	"os"
	"time"

	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/podbox/podbox/sandbox"
)

var _ taskapi.TaskService = (*Service)(nil)

var errNoTasks = fmt.Errorf("%w: containers are not supported by this shim yet", errState)

func (s *Service) State(ctx context.Context, r *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Create(ctx context.Context, r *taskapi.CreateTaskRequest) (*taskapi.CreateTaskResponse, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Start(ctx context.Context, r *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Delete(ctx context.Context, r *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Pids(ctx context.Context, r *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Pause(ctx context.Context, r *taskapi.PauseRequest) (*emptypb.Empty, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Resume(ctx context.Context, r *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Checkpoint(ctx context.Context, r *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, toStatus(fmt.Errorf("checkpoint: %w: not implemented", errState))
}
func (s *Service) Kill(ctx context.Context, r *taskapi.KillRequest) (*emptypb.Empty, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Exec(ctx context.Context, r *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) ResizePty(ctx context.Context, r *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) CloseIO(ctx context.Context, r *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Update(ctx context.Context, r *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Wait(ctx context.Context, r *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	return nil, toStatus(errNoTasks)
}
func (s *Service) Stats(ctx context.Context, r *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	return nil, toStatus(errNoTasks)
}

// Connect reports the shim's PID and, once a sandbox exists, the pause's.
func (s *Service) Connect(ctx context.Context, r *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid()), Version: "2"}
	if s.sb != nil {
		resp.TaskPid = uint32(s.sb.PausePID)
	}
	return resp, nil
}

// Shutdown ends the shim if it serves nothing any more: containerd sends it
// after every task delete, also while other tasks of the group still run.
func (s *Service) Shutdown(ctx context.Context, r *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	idle := s.sb == nil
	s.mu.Unlock()
	if idle || r.Now {
		s.requestExit()
	}
	return &emptypb.Empty{}, nil
}

// stopContainers stops every container of the sandbox within timeout.
func (s *Service) stopContainers(ctx context.Context, timeout time.Duration) error {
	return nil
}

// deleter deletes containers for sandbox removal.
func (s *Service) deleter() sandbox.ContainerDeleter { return nil }
