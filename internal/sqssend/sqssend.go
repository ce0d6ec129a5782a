// Package sqssend is the one way the project sends messages to SQS: ten to a
// SendMessageBatch, a few batches at once, with one policy for what SQS does not accept.
//
//   - A call that fails as a whole (after the SDK's own retries: throttling, 5xx,
//     connection errors) fails each of its messages with the call's classified error.
//     It is not retried here: the SDK's retryer already did, and a loop around it would
//     multiply its attempts.
//   - An entry SQS failed on its side (SenderFault false) is sent again, in a smaller
//     batch, a bounded number of times with backoff; then it fails, retryable.
//   - An entry refused as the sender's fault (SenderFault true: too large, invalid) fails
//     for good, with SQS's code.
//
// Send answers per message, so each producer decides what a failure means for its own
// work: retry the item that produced it, continue from the first message not sent, or
// report it. See "BatchResultErrorEntry",
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_BatchResultErrorEntry.html.
package sqssend

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"golang.org/x/sync/errgroup"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// API is the part of the SQS client a Sender uses.
type API interface {
	SendMessageBatch(ctx context.Context, in *sqs.SendMessageBatchInput, opts ...func(*sqs.Options)) (*sqs.SendMessageBatchOutput, error)
}

// Limits of SendMessageBatch (API_SendMessageBatch): ten entries; DelaySeconds up to 900.
const (
	MaxBatch = 10
	MaxDelay = 15 * time.Minute
	// maxBatchBytes keeps a batch under SQS's original 256 KiB total payload (the limit
	// has been raised since; a smaller batch is never refused for its size).
	maxBatchBytes = 256 << 10
)

// Message is one message to send.
type Message struct {
	Body string
	// Delay postpones delivery (DelaySeconds, whole seconds, at most MaxDelay).
	Delay time.Duration
}

// Sender sends messages. It is safe for concurrent use.
type Sender struct {
	api      API
	parallel int
	resend   retry.Policy
}

// Option configures a Sender.
type Option func(*Sender)

// WithParallel sets how many batches are in flight at once (default 4).
func WithParallel(n int) Option { return func(s *Sender) { s.parallel = max(1, n) } }

// WithResend sets how entries SQS failed on its side are sent again (default: 3
// attempts in all, 200 ms then 400 ms apart).
func WithResend(p retry.Policy) Option { return func(s *Sender) { s.resend = p } }

// New returns a Sender using api.
func New(api API, opts ...Option) *Sender {
	s := &Sender{api: api, parallel: 4, resend: retry.Policy{Attempts: 3, Initial: 200 * time.Millisecond, Max: 2 * time.Second}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Send sends msgs to queueURL and answers, in msgs' order, nil for each message SQS
// accepted and the reason for each it did not (a retry.Classified *Error). Batches go in
// order, up to the Sender's parallelism at once.
func (s *Sender) Send(ctx context.Context, queueURL string, msgs []Message) []error {
	errs := make([]error, len(msgs))
	g := new(errgroup.Group)
	g.SetLimit(s.parallel)
	for _, b := range batches(msgs) {
		g.Go(func() error {
			s.sendBatch(ctx, queueURL, msgs, b, errs)
			return nil
		})
	}
	g.Wait()
	return errs
}

// batches splits msgs into index ranges of at most MaxBatch messages and maxBatchBytes.
func batches(msgs []Message) [][]int {
	var out [][]int
	var cur []int
	size := 0
	for i, m := range msgs {
		if len(cur) == MaxBatch || (len(cur) > 0 && size+len(m.Body) > maxBatchBytes) {
			out, cur, size = append(out, cur), nil, 0
		}
		cur = append(cur, i)
		size += len(m.Body)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

// sendBatch sends one batch (indexes into msgs) and records each message's fate in errs
// (each batch writes only its own indexes, so batches in parallel need no lock).
func (s *Sender) sendBatch(ctx context.Context, queueURL string, msgs []Message, pending []int, errs []error) {
	p := s.resend
	p.Attempts, p.Initial, p.Max = max(p.Attempts, 1), max(p.Initial, time.Millisecond), max(p.Max, p.Initial)
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	wait := p.Initial
	for attempt := 1; ; attempt++ {
		entries := make([]sqstypes.SendMessageBatchRequestEntry, len(pending))
		for k, i := range pending {
			entries[k] = sqstypes.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), MessageBody: aws.String(msgs[i].Body)}
			if d := msgs[i].Delay; d > 0 {
				entries[k].DelaySeconds = int32(min(d, MaxDelay) / time.Second)
			}
		}
		out, err := s.api.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(queueURL), Entries: entries})
		if err != nil {
			callErr := &Error{Err: ecraccess.WrapAWS("sqs:SendMessageBatch", err)}
			for _, i := range pending {
				errs[i] = callErr
			}
			return
		}
		var again []int
		for _, f := range out.Failed {
			i, convErr := strconv.Atoi(aws.ToString(f.Id))
			if convErr != nil || i < 0 || i >= len(msgs) {
				continue // not an entry of ours: the ones we sent stay unanswered below
			}
			e := &Error{Code: aws.ToString(f.Code), Message: aws.ToString(f.Message), SenderFault: f.SenderFault}
			errs[i] = e
			if !f.SenderFault {
				again = append(again, i)
			}
		}
		answered := map[int]bool{}
		for _, ok := range out.Successful {
			if i, convErr := strconv.Atoi(aws.ToString(ok.Id)); convErr == nil {
				answered[i] = true
				errs[i] = nil
			}
		}
		for _, f := range out.Failed {
			if i, convErr := strconv.Atoi(aws.ToString(f.Id)); convErr == nil {
				answered[i] = true
			}
		}
		for _, i := range pending {
			if !answered[i] {
				// Neither accepted nor refused: not known to be sent.
				errs[i] = &Error{Code: "NoAnswer", Message: "SQS answered nothing for this entry"}
				again = append(again, i)
			}
		}
		if len(again) == 0 || attempt >= p.Attempts || !sleep(ctx, wait) {
			return
		}
		pending, wait = again, min(time.Duration(float64(wait)*p.Multiplier), p.Max)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Error is why a message was not sent: SQS refused its entry (Code, Message,
// SenderFault), or the whole call failed (Err).
type Error struct {
	Code        string
	Message     string
	SenderFault bool
	Err         error
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Err.Error()
	}
	who := "on SQS's side"
	if e.SenderFault {
		who = "as the sender's fault"
	}
	return fmt.Sprintf("sqs:SendMessageBatch refused the message %s: %s: %s", who, e.Code, e.Message)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorCode is SQS's code for the entry, or the failed call's.
func (e *Error) ErrorCode() string {
	if e.Err != nil {
		code, _ := retry.Classify(e.Err)
		return code
	}
	return e.Code
}

// Retryable: an entry SQS failed on its side, or a call that failed retryably, may
// succeed later; an entry refused as the sender's fault never will.
func (e *Error) Retryable() bool {
	if e.Err != nil {
		return retry.IsRetryable(e.Err)
	}
	return !e.SenderFault
}
