// Package eventsource does locally what Lambda's SQS event source mapping does: it polls
// an SQS queue (the sandbox's, through the real AWS SDK for Go v2 client) and invokes a
// function with batches of messages, then deletes what the function handled.
//
// It follows the Lambda developer guide:
//   - polling and batching (https://docs.aws.amazon.com/lambda/latest/dg/with-sqs.html):
//     long polls (WaitTimeSeconds up to 20, at most 10 messages a call) gather up to
//     BatchSize messages; a batch goes as soon as it is full, when its batching window
//     ends, or, with no window, as soon as a poll returns messages; and before its
//     payload would pass 6 MB (the messages beyond wait for the next batch). The payload
//     is an SQS event as Lambda builds it (Records with messageId, receiptHandle, body,
//     attributes, messageAttributes, md5OfBody, md5OfMessageAttributes, eventSource
//     "aws:sqs", eventSourceARN and awsRegion); it decodes into aws-lambda-go's
//     events.SQSEvent.
//   - errors (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-errorhandling.html):
//     a successful invocation deletes the whole batch; with ReportBatchItemFailures, all
//     but the messages its batchItemFailures name (a null or empty response or list is a
//     complete success; invalid JSON, an entry without a non-empty itemIdentifier, or an
//     itemIdentifier not in the batch is a complete failure). A function error or a
//     timeout deletes nothing: the messages come back when the queue's visibility
//     timeout ends, and the queue's redrive policy moves them to its dead-letter queue
//     after maxReceiveCount receives.
//   - scaling (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html):
//     at most MaximumConcurrency invocations run at once. There are that many pollers,
//     each gathering a batch and then invoking the function with it.
//
// Differences from Lambda, on purpose or by simplification:
//   - MaximumBatchingWindow is a time.Duration, so tests can use fractions of a second
//     (Lambda takes whole seconds); the window opens when the batch's first message is
//     received (guess: the guide does not say). MaximumConcurrency may be 1 (Lambda's
//     minimum is 2).
//   - No backoff after function errors (Lambda reduces the mapping's concurrency for a
//     while) and no throttling: every poller keeps polling.
//   - FunctionTimeout is the invocation context's deadline. A function still running
//     then counts as timed out and its result is ignored, but Go cannot kill it: its
//     goroutine runs until Invoke returns, so Invoke must honour ctx. When Run's context
//     ends, invocations under way are cancelled and their batches left to the visibility
//     timeout, as after a crash.
//   - Recursive loop detection (Lambda stops a Lambda → SQS → same function loop after
//     about 16 invocations unless RecursiveLoop is Allow,
//     https://docs.aws.amazon.com/lambda/latest/dg/invocation-recursion.html) is NOT
//     emulated: AWS tracks it through the X-Ray trace header of the messages the function
//     sends, which an in-process function's own SQS client would have to carry.
//   - Event filtering (FilterCriteria) and FIFO queues are not emulated.
package eventsource

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

// Limits of the SQS event source mapping (CreateEventSourceMapping in the Lambda API
// reference, https://docs.aws.amazon.com/lambda/latest/api/API_CreateEventSourceMapping.html)
// and of Lambda (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
const (
	DefaultBatchSize          = 10
	MaxBatchSize              = 10000
	MaxBatchingWindow         = 300 * time.Second
	DefaultMaximumConcurrency = 2
	MaxMaximumConcurrency     = 1000
	// DefaultFunctionTimeout is Lambda's default function timeout, 3 seconds
	// (https://docs.aws.amazon.com/lambda/latest/dg/configuration-timeout.html).
	DefaultFunctionTimeout = 3 * time.Second
	MaxFunctionTimeout     = 900 * time.Second
	// MaxPayload is the synchronous invocation payload limit, 6 MB.
	MaxPayload = 6 << 20

	maxReceive      = 10 // MaxNumberOfMessages per ReceiveMessage
	maxWaitSeconds  = 20 // WaitTimeSeconds of a long poll
	shortPollPause  = 50 * time.Millisecond
	maxPollBackoff  = 2 * time.Second
	settleTimeout   = 10 * time.Second // deletes after an invocation, even while stopping
	idlePollPeriod  = 20 * time.Millisecond
	eventSourceName = "aws:sqs"
)

// Config is an event source mapping: the queue, batching, concurrency and the function.
type Config struct {
	QueueURL string
	// BatchSize is the most messages per invocation, 1 to 10000 (0: 10). Over 10 needs
	// a MaximumBatchingWindow of at least 1 s, as Lambda requires.
	BatchSize int
	// MaximumBatchingWindow is how long to gather messages before invoking, up to 300 s
	// (0: invoke as soon as a poll returns messages).
	MaximumBatchingWindow time.Duration
	// MaximumConcurrency is the most invocations at once (0: 2, Lambda's minimum).
	MaximumConcurrency int
	// FunctionTimeout is the invocation's context deadline (0: 3 s, Lambda's default);
	// a function still running then has timed out and its whole batch fails.
	FunctionTimeout time.Duration
	// ReportBatchItemFailures is FunctionResponseTypes: [ReportBatchItemFailures]: the
	// function's batchItemFailures name the messages to keep.
	ReportBatchItemFailures bool
	// Invoke runs the function: an in-process handler, or lambdarun.Function.Invoke for a
	// bootstrap under the Runtime Interface Emulator. A returned error is a function
	// error (the whole batch fails).
	Invoke func(ctx context.Context, payload []byte) ([]byte, error)
	// OnInvoke, when set, is told of each invocation once its batch is settled, in the
	// poller's goroutine.
	OnInvoke func(Invocation)
}

// ErrTimeout is an Invocation's Err when the function ran past FunctionTimeout.
var ErrTimeout = errors.New("eventsource: function timed out")

// InvalidResponseError is an Invocation's Err when, with ReportBatchItemFailures, the
// function's answer is not a valid partial batch response (the whole batch fails).
type InvalidResponseError struct{ Reason string }

func (e *InvalidResponseError) Error() string {
	return "eventsource: invalid partial batch response: " + e.Reason
}

// Invocation reports one invocation of the function.
type Invocation struct {
	// Records are the batch's messages as the function received them.
	Records []Record
	// Payload is the JSON the function was invoked with; Response what it returned.
	Payload  []byte
	Response []byte
	Start    time.Time
	Duration time.Duration
	// Err is the function's error, ErrTimeout, an *InvalidResponseError, or the context
	// error when Run stopped during the invocation.
	Err error
	// Deleted lists the message IDs deleted from the queue after the invocation; Failed
	// those left to come back after the visibility timeout (a deletion SQS refused is in
	// neither: see Stats.DeleteErrors).
	Deleted []string
	Failed  []string
}

// ReceiveCounts maps each record's message ID to its ApproximateReceiveCount.
func (inv Invocation) ReceiveCounts() map[string]int {
	out := make(map[string]int, len(inv.Records))
	for _, r := range inv.Records {
		n, _ := strconv.Atoi(r.Attributes["ApproximateReceiveCount"])
		out[r.MessageID] = n
	}
	return out
}

// Record is one message of an invocation's payload. Its JSON is Lambda's SQS record,
// which aws-lambda-go's events.SQSMessage decodes.
type Record struct {
	MessageID              string                      `json:"messageId"`
	ReceiptHandle          string                      `json:"receiptHandle"`
	Body                   string                      `json:"body"`
	Attributes             map[string]string           `json:"attributes"`
	MessageAttributes      map[string]MessageAttribute `json:"messageAttributes"`
	MD5OfBody              string                      `json:"md5OfBody"`
	MD5OfMessageAttributes *string                     `json:"md5OfMessageAttributes"`
	EventSource            string                      `json:"eventSource"`
	EventSourceARN         string                      `json:"eventSourceARN"`
	AWSRegion              string                      `json:"awsRegion"`
}

// MessageAttribute is a message attribute as Lambda passes it (both lists always present).
type MessageAttribute struct {
	StringValue      *string  `json:"stringValue,omitempty"`
	BinaryValue      []byte   `json:"binaryValue,omitempty"`
	StringListValues []string `json:"stringListValues"`
	BinaryListValues [][]byte `json:"binaryListValues"`
	DataType         string   `json:"dataType"`
}

// Stats counts what an event source did.
type Stats struct {
	Polls       int64 // ReceiveMessage calls
	PollErrors  int64
	Received    int64 // messages received
	Invocations int64
	// Deleted counts messages deleted after their invocation; Failed those left for
	// redelivery (reported item failures, or whole batches that failed).
	Deleted          int64
	Failed           int64
	FunctionErrors   int64
	Timeouts         int64
	InvalidResponses int64
	DeleteErrors     int64
	// Running is the number of invocations under way; MaxRunning the most there were at once.
	Running    int64
	MaxRunning int64
	// LargestBatch is the most records one invocation had.
	LargestBatch int64
}

// EventSource is a running (or runnable) mapping.
type EventSource struct {
	client *sqs.Client
	cfg    Config
	arn    string
	region string

	polls, pollErrors, received, invocations, deleted, failed atomic.Int64
	functionErrors, timeouts, invalid, deleteErrors           atomic.Int64
	running, maxRunning, largestBatch                         atomic.Int64
	busy                                                      atomic.Int64 // invocations not yet settled and reported
}

// New checks cfg, fills in its defaults and returns an event source for Run.
func New(client *sqs.Client, cfg Config) (*EventSource, error) {
	if client == nil {
		return nil, errors.New("eventsource: no SQS client")
	}
	if cfg.QueueURL == "" {
		return nil, errors.New("eventsource: QueueURL is required")
	}
	if cfg.Invoke == nil {
		return nil, errors.New("eventsource: Invoke is required")
	}
	if cfg.BatchSize == 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.MaximumConcurrency == 0 {
		cfg.MaximumConcurrency = DefaultMaximumConcurrency
	}
	if cfg.FunctionTimeout == 0 {
		cfg.FunctionTimeout = DefaultFunctionTimeout
	}
	switch {
	case cfg.BatchSize < 1 || cfg.BatchSize > MaxBatchSize:
		return nil, fmt.Errorf("eventsource: BatchSize %d is not between 1 and %d", cfg.BatchSize, MaxBatchSize)
	case cfg.MaximumBatchingWindow < 0 || cfg.MaximumBatchingWindow > MaxBatchingWindow:
		return nil, fmt.Errorf("eventsource: MaximumBatchingWindow %s is not between 0 and %s", cfg.MaximumBatchingWindow, MaxBatchingWindow)
	case cfg.BatchSize > 10 && cfg.MaximumBatchingWindow < time.Second:
		// "When you set BatchSize to a value greater than 10, you must set
		// MaximumBatchingWindowInSeconds to at least 1." (with-sqs.html)
		return nil, fmt.Errorf("eventsource: a BatchSize over 10 (%d) needs a MaximumBatchingWindow of at least 1s", cfg.BatchSize)
	case cfg.MaximumConcurrency < 1 || cfg.MaximumConcurrency > MaxMaximumConcurrency:
		return nil, fmt.Errorf("eventsource: MaximumConcurrency %d is not between 1 and %d", cfg.MaximumConcurrency, MaxMaximumConcurrency)
	case cfg.FunctionTimeout < 0 || cfg.FunctionTimeout > MaxFunctionTimeout:
		return nil, fmt.Errorf("eventsource: FunctionTimeout %s is not between 0 and %s", cfg.FunctionTimeout, MaxFunctionTimeout)
	}
	client = sqs.New(client.Options(), func(o *sqs.Options) {
		if o.HTTPClient != nil {
			o.HTTPClient = readOnlyBodies{o.HTTPClient}
		}
	})
	return &EventSource{client: client, cfg: cfg}, nil
}

// readOnlyBodies hides the io.WriterTo of request bodies from net/http. smithy-go closes
// a request body as soon as the response's headers arrive, and the closed body's WriteTo
// answers io.EOF, which net/http's write loop, still checking the body for bytes beyond
// its Content-Length, takes as an error: it closes the connection the response is being
// read from ("use of closed network connection", aws/aws-sdk-go-v2#2737). The SDK then
// retries the call; for ReceiveMessage the messages the lost answer carried stay in
// flight until their visibility timeout. Against the in-process sandbox, which answers
// at once, it lost a 2.5 MB ReceiveMessage answer in 4 to 7 runs of 10 of
// TestPayloadLimit; with plain Read, an exhausted or closed body reads as io.EOF and
// nothing breaks.
type readOnlyBodies struct{ next sqs.HTTPClient }

func (c readOnlyBodies) Do(req *http.Request) (*http.Response, error) {
	if req.Body != nil && req.Body != http.NoBody {
		req.Body = readOnlyBody{req.Body}
	}
	return c.next.Do(req)
}

type readOnlyBody struct{ rc io.ReadCloser }

func (b readOnlyBody) Read(p []byte) (int, error) { return b.rc.Read(p) }
func (b readOnlyBody) Close() error               { return b.rc.Close() }

// Run polls cfg.QueueURL and invokes cfg.Invoke until ctx ends; see New and EventSource.Run.
func Run(ctx context.Context, client *sqs.Client, cfg Config) error {
	es, err := New(client, cfg)
	if err != nil {
		return err
	}
	return es.Run(ctx)
}

// Run polls and invokes until ctx ends, then waits for the invocations under way (which
// ctx's end cancels) and returns nil. It returns an error at once if the queue's ARN
// cannot be read (no such queue, no access). A poll that fails is retried after a
// pause, as Lambda keeps polling.
func (es *EventSource) Run(ctx context.Context) error {
	out, err := es.client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: aws.String(es.cfg.QueueURL), AttributeNames: []types.QueueAttributeName{types.QueueAttributeNameQueueArn, types.QueueAttributeNameVisibilityTimeout},
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("eventsource: reading the ARN of %s: %w", es.cfg.QueueURL, err)
	}
	// Lambda refuses an event source mapping whose function timeout exceeds the queue's
	// visibility timeout ("Your function's timeout must be less than or equal to the
	// queue's visibility timeout. Lambda validates this requirement when you create or
	// update an event source mapping",
	// https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html): a batch
	// would become visible again while the function still works on it.
	if v, err := strconv.Atoi(out.Attributes[string(types.QueueAttributeNameVisibilityTimeout)]); err == nil && es.cfg.FunctionTimeout > time.Duration(v)*time.Second {
		return fmt.Errorf("eventsource: Invalid request provided: Queue visibility timeout: %d seconds is less than Function timeout: %v (%s)", v, es.cfg.FunctionTimeout, es.cfg.QueueURL)
	}
	es.arn = out.Attributes[string(types.QueueAttributeNameQueueArn)]
	// arn:aws:sqs:<region>:<account>:<name>
	if parts := strings.Split(es.arn, ":"); len(parts) == 6 {
		es.region = parts[3]
	}
	var wg sync.WaitGroup
	for range es.cfg.MaximumConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			es.poller(ctx)
		}()
	}
	wg.Wait()
	return nil
}

// Stats returns the counters so far.
func (es *EventSource) Stats() Stats {
	return Stats{
		Polls: es.polls.Load(), PollErrors: es.pollErrors.Load(), Received: es.received.Load(),
		Invocations: es.invocations.Load(), Deleted: es.deleted.Load(), Failed: es.failed.Load(),
		FunctionErrors: es.functionErrors.Load(), Timeouts: es.timeouts.Load(), InvalidResponses: es.invalid.Load(),
		DeleteErrors: es.deleteErrors.Load(), Running: es.running.Load(), MaxRunning: es.maxRunning.Load(),
		LargestBatch: es.largestBatch.Load(),
	}
}

// poller gathers batches and invokes the function with each, one at a time.
func (es *EventSource) poller(ctx context.Context) {
	var carry []Record // received beyond the last batch's payload limit
	backoff := 100 * time.Millisecond
	for ctx.Err() == nil {
		batch, rest, err := es.gather(ctx, carry)
		carry = rest
		if ctx.Err() != nil {
			// Stopping: what was received but not invoked goes back to the queue now.
			es.release(ctx, append(batch, carry...))
			return
		}
		if err != nil {
			es.pollErrors.Add(1)
			if len(batch) == 0 {
				if !sleep(ctx, backoff) {
					es.release(ctx, carry)
					return
				}
				backoff = min(backoff*2, maxPollBackoff)
				continue
			}
		} else {
			backoff = 100 * time.Millisecond
		}
		if len(batch) > 0 {
			es.invoke(ctx, batch)
		}
	}
	es.release(ctx, carry)
}

// release makes received records visible again at once (ChangeMessageVisibility 0), so
// that an event source stopped before invoking them does not hide them for a whole
// visibility timeout. Their receive counts stay as they are.
func (es *EventSource) release(ctx context.Context, recs []Record) {
	if len(recs) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	for start := 0; start < len(recs); start += maxReceive {
		chunk := recs[start:min(start+maxReceive, len(recs))]
		entries := make([]types.ChangeMessageVisibilityBatchRequestEntry, len(chunk))
		for i, r := range chunk {
			entries[i] = types.ChangeMessageVisibilityBatchRequestEntry{Id: aws.String(strconv.Itoa(i)), ReceiptHandle: aws.String(r.ReceiptHandle), VisibilityTimeout: 0}
		}
		es.client.ChangeMessageVisibilityBatch(rctx, &sqs.ChangeMessageVisibilityBatchInput{QueueUrl: aws.String(es.cfg.QueueURL), Entries: entries})
	}
}

// gather receives one batch: up to BatchSize records, within the batching window, under
// the payload limit. Records received beyond the limit are returned as rest. A failed
// poll ends the batch with what it has, and the error.
func (es *EventSource) gather(ctx context.Context, carry []Record) (batch, rest []Record, err error) {
	batch = carry
	size := payloadSize(batch)
	var deadline time.Time
	if len(batch) > 0 {
		deadline = time.Now().Add(es.cfg.MaximumBatchingWindow)
	}
	for len(batch) < es.cfg.BatchSize && size < MaxPayload {
		wait := maxWaitSeconds
		if len(batch) > 0 {
			remaining := time.Until(deadline)
			if es.cfg.MaximumBatchingWindow == 0 || remaining <= 0 {
				break
			}
			// Whole seconds of long poll while they fit in the window, short polls after:
			// a poll is never cut short (that would lose the messages it took).
			wait = min(int(remaining/time.Second), maxWaitSeconds)
		}
		recs, err := es.receive(ctx, min(maxReceive, es.cfg.BatchSize-len(batch)), wait)
		if err != nil {
			return batch, nil, err
		}
		if len(recs) == 0 {
			if len(batch) > 0 && wait == 0 && !sleep(ctx, min(shortPollPause, time.Until(deadline))) {
				return batch, nil, ctx.Err()
			}
			continue
		}
		if len(batch) == 0 {
			deadline = time.Now().Add(es.cfg.MaximumBatchingWindow)
		}
		for i, r := range recs {
			n := recordSize(r)
			if len(batch) > 0 && size+n > MaxPayload {
				return batch, recs[i:], nil
			}
			batch = append(batch, r)
			size += n
		}
	}
	return batch, nil, nil
}

// receive makes one ReceiveMessage call and turns its messages into records.
func (es *EventSource) receive(ctx context.Context, max, wait int) ([]Record, error) {
	es.polls.Add(1)
	out, err := es.client.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{
		QueueUrl:                    aws.String(es.cfg.QueueURL),
		MaxNumberOfMessages:         int32(max),
		WaitTimeSeconds:             int32(wait),
		MessageSystemAttributeNames: []types.MessageSystemAttributeName{types.MessageSystemAttributeNameAll},
		MessageAttributeNames:       []string{"All"},
	})
	if err != nil {
		return nil, err
	}
	es.received.Add(int64(len(out.Messages)))
	recs := make([]Record, 0, len(out.Messages))
	for _, m := range out.Messages {
		recs = append(recs, es.record(m))
	}
	return recs, nil
}

func (es *EventSource) record(m types.Message) Record {
	r := Record{
		MessageID: aws.ToString(m.MessageId), ReceiptHandle: aws.ToString(m.ReceiptHandle), Body: aws.ToString(m.Body),
		Attributes: m.Attributes, MessageAttributes: map[string]MessageAttribute{}, MD5OfBody: aws.ToString(m.MD5OfBody),
		MD5OfMessageAttributes: m.MD5OfMessageAttributes,
		EventSource:            eventSourceName, EventSourceARN: es.arn, AWSRegion: es.region,
	}
	if r.Attributes == nil {
		r.Attributes = map[string]string{}
	}
	for name, v := range m.MessageAttributes {
		a := MessageAttribute{StringValue: v.StringValue, BinaryValue: v.BinaryValue, StringListValues: v.StringListValues, BinaryListValues: v.BinaryListValues, DataType: aws.ToString(v.DataType)}
		if a.StringListValues == nil {
			a.StringListValues = []string{}
		}
		if a.BinaryListValues == nil {
			a.BinaryListValues = [][]byte{}
		}
		r.MessageAttributes[name] = a
	}
	return r
}

// recordSize is what a record adds to the payload.
func recordSize(r Record) int {
	b, _ := json.Marshal(r)
	return len(b) + 1
}

func payloadSize(recs []Record) int {
	n := len(`{"Records":[]}`)
	for _, r := range recs {
		n += recordSize(r)
	}
	return n
}

// invoke runs the function on a batch and settles it: deletes what succeeded.
func (es *EventSource) invoke(ctx context.Context, batch []Record) {
	payload, err := json.Marshal(struct {
		Records []Record `json:"Records"`
	}{batch})
	if err != nil {
		panic(err) // strings, maps of strings and byte slices
	}
	es.busy.Add(1)
	defer es.busy.Add(-1)
	es.invocations.Add(1)
	for {
		cur := es.largestBatch.Load()
		if int64(len(batch)) <= cur || es.largestBatch.CompareAndSwap(cur, int64(len(batch))) {
			break
		}
	}
	inv := Invocation{Records: batch, Payload: payload, Start: time.Now()}
	n := es.running.Add(1)
	for {
		cur := es.maxRunning.Load()
		if n <= cur || es.maxRunning.CompareAndSwap(cur, n) {
			break
		}
	}
	ictx, cancel := context.WithTimeout(ctx, es.cfg.FunctionTimeout)
	type result struct {
		resp []byte
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := es.cfg.Invoke(ictx, payload)
		done <- result{resp, err}
	}()
	select {
	case r := <-done:
		inv.Response, inv.Err = r.resp, r.err
		if r.err != nil && ictx.Err() == context.DeadlineExceeded && ctx.Err() == nil {
			inv.Err = ErrTimeout
		}
	case <-ictx.Done():
		inv.Err = ErrTimeout
	}
	if ctx.Err() != nil && inv.Err != nil {
		inv.Err = ctx.Err() // Run stopped during the invocation
	}
	cancel()
	inv.Duration = time.Since(inv.Start)
	es.running.Add(-1)

	failed := map[string]bool{}
	switch {
	case inv.Err == ErrTimeout:
		es.timeouts.Add(1)
		markAll(failed, batch)
	case inv.Err != nil:
		if ctx.Err() == nil {
			es.functionErrors.Add(1)
		}
		markAll(failed, batch)
	case es.cfg.ReportBatchItemFailures:
		ids, perr := itemFailures(inv.Response, batch)
		if perr != nil {
			es.invalid.Add(1)
			inv.Err = perr
			markAll(failed, batch)
		}
		for _, id := range ids {
			failed[id] = true
		}
	}
	var toDelete []Record
	for _, r := range batch {
		if failed[r.MessageID] {
			inv.Failed = append(inv.Failed, r.MessageID)
		} else {
			toDelete = append(toDelete, r)
		}
	}
	es.failed.Add(int64(len(inv.Failed)))
	inv.Deleted = es.delete(ctx, toDelete)
	if es.cfg.OnInvoke != nil {
		es.cfg.OnInvoke(inv)
	}
}

func markAll(m map[string]bool, batch []Record) {
	for _, r := range batch {
		m[r.MessageID] = true
	}
}

// itemFailures reads a partial batch response, as Lambda does: null, empty, or a null
// or empty batchItemFailures is a complete success; anything else unreadable, an entry
// without a non-empty itemIdentifier string, or one naming no message of the batch is a
// complete failure (the "Success and failure conditions" of services-sqs-errorhandling.html).
// A valid JSON value that is not an object (a string, a number) is taken as invalid
// (guess).
func itemFailures(resp []byte, batch []Record) ([]string, error) {
	trimmed := strings.TrimSpace(string(resp))
	if trimmed == "" || trimmed == "null" {
		return nil, nil
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal([]byte(trimmed), &body); err != nil {
		return nil, &InvalidResponseError{Reason: fmt.Sprintf("not a JSON object: %v", err)}
	}
	raw, ok := body["batchItemFailures"]
	if !ok || string(raw) == "null" {
		return nil, nil
	}
	var entries []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, &InvalidResponseError{Reason: fmt.Sprintf("batchItemFailures is not a list of objects: %v", err)}
	}
	inBatch := map[string]bool{}
	for _, r := range batch {
		inBatch[r.MessageID] = true
	}
	var ids []string
	for i, e := range entries {
		var id *string
		if v, ok := e["itemIdentifier"]; ok {
			if err := json.Unmarshal(v, &id); err != nil {
				return nil, &InvalidResponseError{Reason: fmt.Sprintf("batchItemFailures[%d].itemIdentifier is not a string", i)}
			}
		}
		switch {
		case id == nil:
			return nil, &InvalidResponseError{Reason: fmt.Sprintf("batchItemFailures[%d] has no itemIdentifier", i)}
		case *id == "":
			return nil, &InvalidResponseError{Reason: fmt.Sprintf("batchItemFailures[%d].itemIdentifier is empty", i)}
		case !inBatch[*id]:
			return nil, &InvalidResponseError{Reason: fmt.Sprintf("batchItemFailures[%d].itemIdentifier %q is not a message of the batch", i, *id)}
		}
		ids = append(ids, *id)
	}
	return ids, nil
}

// delete removes records from the queue, ten at a time, even when ctx has ended (the
// function's work is done); it returns the IDs SQS deleted.
func (es *EventSource) delete(ctx context.Context, recs []Record) []string {
	if len(recs) == 0 {
		return nil
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	var deleted []string
	for start := 0; start < len(recs); start += maxReceive {
		chunk := recs[start:min(start+maxReceive, len(recs))]
		entries := make([]types.DeleteMessageBatchRequestEntry, len(chunk))
		byEntry := map[string]string{}
		for i, r := range chunk {
			id := strconv.Itoa(i)
			entries[i] = types.DeleteMessageBatchRequestEntry{Id: aws.String(id), ReceiptHandle: aws.String(r.ReceiptHandle)}
			byEntry[id] = r.MessageID
		}
		out, err := es.client.DeleteMessageBatch(dctx, &sqs.DeleteMessageBatchInput{QueueUrl: aws.String(es.cfg.QueueURL), Entries: entries})
		if err != nil {
			es.deleteErrors.Add(int64(len(chunk)))
			continue
		}
		es.deleteErrors.Add(int64(len(out.Failed)))
		for _, s := range out.Successful {
			deleted = append(deleted, byEntry[aws.ToString(s.Id)])
		}
	}
	es.deleted.Add(int64(len(deleted)))
	return deleted
}

// WaitIdle returns once the queues have no message visible, in flight or delayed
// (ApproximateNumberOfMessages, …NotVisible and …Delayed all 0) — all of them in one
// pass, as the consumer of one may send to another (a reconcile item's copies) — or
// when ctx ends, with its error. Messages on their way to a queue (an event EventBridge
// has not delivered yet) are not seen: wait for those first
// (Sandbox.WaitEventsDelivered).
func WaitIdle(ctx context.Context, client *sqs.Client, queueURLs ...string) error {
	names := []types.QueueAttributeName{
		types.QueueAttributeNameApproximateNumberOfMessages,
		types.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
		types.QueueAttributeNameApproximateNumberOfMessagesDelayed,
	}
	for {
		idle := true
		for _, q := range queueURLs {
			out, err := client.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{QueueUrl: aws.String(q), AttributeNames: names})
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("eventsource: reading %s: %w", q, err)
			}
			for _, n := range names {
				if out.Attributes[string(n)] != "0" {
					idle = false
				}
			}
			if !idle {
				break
			}
		}
		if idle {
			return nil
		}
		if !sleep(ctx, idlePollPeriod) {
			return ctx.Err()
		}
	}
}

// WaitIdle returns once the queue is idle (see the function WaitIdle) and no invocation
// of this event source is under way or unreported (its deletes done and OnInvoke
// returned), or when ctx ends, with its error.
func (es *EventSource) WaitIdle(ctx context.Context) error {
	for {
		if err := WaitIdle(ctx, es.client, es.cfg.QueueURL); err != nil {
			return err
		}
		if es.busy.Load() == 0 {
			return nil
		}
		if !sleep(ctx, idlePollPeriod) {
			return ctx.Err()
		}
	}
}

// sleep waits d, or less when ctx ends (false then).
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
