package eventsource

import (
	"context"
	"encoding/json"
	"sync"
)

// Handler is a function's handler run in process, as lambda.Start would take it.
type Handler interface {
	Handle(ctx context.Context, payload json.RawMessage) (any, error)
}

// Environments is an in-process function run as Lambda runs one: each invocation in an
// execution environment of its own, which handles one invocation at a time and is kept
// warm for the next; an invocation that finds none free gets a new one from newEnv (a
// cold start). Use its Invoke as Config.Invoke — for several mappings of one function,
// the same Environments. What one environment's handler keeps (its engine, its
// credentials, its manifest write pacing) is then kept per environment, as on Lambda.
type Environments struct {
	newEnv func() (Handler, error)
	mu     sync.Mutex
	idle   []Handler
	made   int
}

// NewEnvironments returns the environments of the function newEnv makes handlers of.
func NewEnvironments(newEnv func() (Handler, error)) *Environments {
	return &Environments{newEnv: newEnv}
}

// Invoke runs one invocation in a free environment; the answer is the handler's, as JSON.
func (e *Environments) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	h, err := e.take()
	if err != nil {
		return nil, err
	}
	defer e.put(h)
	out, err := h.Handle(ctx, payload)
	if err != nil {
		return nil, err
	}
	return json.Marshal(out)
}

// Made is how many environments were made (cold starts).
func (e *Environments) Made() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.made
}

func (e *Environments) take() (Handler, error) {
	e.mu.Lock()
	if n := len(e.idle); n > 0 {
		h := e.idle[n-1]
		e.idle = e.idle[:n-1]
		e.mu.Unlock()
		return h, nil
	}
	e.made++
	e.mu.Unlock()
	return e.newEnv()
}

func (e *Environments) put(h Handler) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.idle = append(e.idle, h)
}
