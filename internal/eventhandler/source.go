package eventhandler

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// ErrForeignSource is the permanent failure of an event or work item whose source is
// another registry (account, region) than the function's own: a message is a claim, and
// this function reads from, and mirrors the deletions of, its own source only. It would
// otherwise read an image another account offers, or ask ECR about a repository of the
// wrong registry. Acknowledged and reported, never retried.
var ErrForeignSource = errors.New("the message names another source registry than this function's")

// Codes of the messages not acted on (ReplicationFailures by Reason, Problem.Code).
const (
	CodeMalformed     = "Malformed"
	CodeNotAllowed    = "NotAllowed"
	CodeForeignSource = "ForeignSource"
	// CodeSourceUnknown: the function could not tell its own source registry (STS did
	// not answer); the message is left for redelivery.
	CodeSourceUnknown = "SourceUnknown"
)

// problemCode is the code of a message not acted on, and whether it is left for
// redelivery rather than failed for good.
func problemCode(err error) (code string, unsettled bool) {
	var unknown *sourceUnknownError
	switch {
	case errors.As(err, &unknown):
		return CodeSourceUnknown, true
	case errors.Is(err, ErrForeignSource):
		return CodeForeignSource, false
	case errors.Is(err, ErrNoRuleAllows):
		return CodeNotAllowed, false
	}
	return CodeMalformed, false
}

// ownSource is the function's own source registry, asked of Config.Source at most once
// per invocation and only for a message that would reach a registry: one refused for what
// it is never costs a network call.
type ownSource struct {
	ctx  context.Context
	get  func(context.Context) (ecrname.Registry, error)
	once sync.Once
	reg  ecrname.Registry
	err  error
}

// refuse answers why a message naming the registry named, for targets, is not acted on:
// nil when named is the function's own source — or when no target is valid, since then
// nothing is asked of any registry and the targets' own errors are reported.
func (o *ownSource) refuse(named ecrname.Registry, targets []rules.Target) error {
	if ok, _ := rules.Split(targets); len(ok) == 0 {
		return nil
	}
	return o.check(named)
}

// check answers why a message naming the registry named is not acted on: nil when it is
// the function's own source. A promotion gate's trigger (a scan event, a signature's push)
// has no target of its own and always reads the registry, so it is always checked.
func (o *ownSource) check(named ecrname.Registry) error {
	o.once.Do(func() { o.reg, o.err = o.get(o.ctx) })
	switch {
	case o.err != nil:
		return &sourceUnknownError{err: o.err}
	case named != o.reg:
		return fmt.Errorf("%w: it names %s; this function's source is %s", ErrForeignSource, named, o.reg)
	}
	return nil
}

// sourceUnknownError: the function's own source registry could not be told.
type sourceUnknownError struct{ err error }

func (e *sourceUnknownError) Error() string {
	return "the function's own source registry is unknown, so the message cannot be checked: " + e.err.Error()
}
func (e *sourceUnknownError) Unwrap() error { return e.err }
