package shim

import (
	"context"
	"errors"
	"os"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/podbox/podbox/sandbox"
)

// toStatus turns an error into a ttrpc status whose code lets the client (the
// CLI, or containerd through errdefs) tell "no such thing" from "already
// exists" from a real failure; the message keeps the whole error chain.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, sandbox.ErrNotFound), errors.Is(err, os.ErrNotExist):
		code = codes.NotFound
	case errors.Is(err, sandbox.ErrNameInUse), errors.Is(err, os.ErrExist):
		code = codes.AlreadyExists
	case errors.Is(err, errInvalid):
		code = codes.InvalidArgument
	case errors.Is(err, errState):
		code = codes.FailedPrecondition
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

var (
	errInvalid = errors.New("invalid argument")
	errState   = errors.New("wrong state")
)
