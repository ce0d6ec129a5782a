package sandbox

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Amazon SQS over AWS JSON 1.0 (X-Amz-Target: AmazonSQS.<Op>), standard queues only.
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_Operations.html
//
// Emulated: CreateQueue, GetQueueUrl, GetQueueAttributes, SetQueueAttributes, DeleteQueue,
// SendMessage(Batch), ReceiveMessage (long polling), DeleteMessage(Batch),
// ChangeMessageVisibility(Batch), PurgeQueue; visibility timeouts, delays, retention,
// ApproximateReceiveCount and redrive to a dead-letter queue.
//
// Simplifications:
//   - No FIFO queues, no SSE/KMS, no queue policies: a queue is reachable only by callers
//     of its own account (others get AccessDenied), and stored policy-like attributes
//     (Policy, RedriveAllowPolicy, Kms*) are kept verbatim but not enforced.
//   - Queues live per (account, region); the URL is <APIURL>/<account>/<name>, so the
//     region comes from the request's SigV4 scope, not from the URL's host.
//   - Visibility, delays and retention follow the sandbox clock (Config.Now); a long poll's
//     wait is measured in real time (so a frozen test clock cannot hang it).
//   - Short polling returns every available message up to MaxNumberOfMessages (AWS samples
//     a subset of its servers).
//   - A message moved to a dead-letter queue keeps its ID, sent timestamp and receive count.
//   - A deleted queue's name can be reused at once (AWS asks for 60 seconds).

// Limits from the SQS developer guide's quotas page.
const (
	sqsMaxMessageSize     = 256 << 10 // bytes, message body plus attributes, and per batch
	sqsMaxBatchEntries    = 10
	sqsMaxVisibility      = 12 * 60 * 60
	sqsMaxWaitTimeSeconds = 20 // the cap of a long poll, as on AWS
	sqsMaxDelaySeconds    = 15 * 60
	sqsMaxAttributes      = 10
	sqsPurgeInterval      = 60 * time.Second
	// sqsPollInterval is how often a waiting long poll rechecks its queue for messages
	// whose visibility timeout or delay ran out (sends wake it at once).
	sqsPollInterval = 50 * time.Millisecond
)

var (
	queueNamePattern    = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)
	batchEntryIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,80}$`)
	attrNamePattern     = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,256}$`)
	sqsARNPattern       = regexp.MustCompile(`^arn:aws[a-z-]*:sqs:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,80})$`)
)

// sqsErrors are SQS's modeled errors (com.amazonaws.sqs#<Code>): their HTTP status and
// the awsQueryError code the service sends in x-amzn-query-error, which the SDK reports
// as the error code (the service is @awsQueryCompatible).
var sqsErrors = map[string]struct {
	status int
	query  string
}{
	"BatchEntryIdsNotDistinct":     {400, "AWS.SimpleQueueService.BatchEntryIdsNotDistinct"},
	"BatchRequestTooLong":          {400, "AWS.SimpleQueueService.BatchRequestTooLong"},
	"EmptyBatchRequest":            {400, "AWS.SimpleQueueService.EmptyBatchRequest"},
	"InvalidAddress":               {404, "InvalidAddress"},
	"InvalidAttributeName":         {400, "InvalidAttributeName"},
	"InvalidAttributeValue":        {400, "InvalidAttributeValue"},
	"InvalidBatchEntryId":          {400, "AWS.SimpleQueueService.InvalidBatchEntryId"},
	"InvalidIdFormat":              {400, "InvalidIdFormat"},
	"InvalidMessageContents":       {400, "InvalidMessageContents"},
	"InvalidSecurity":              {403, "InvalidSecurity"},
	"MessageNotInflight":           {400, "AWS.SimpleQueueService.MessageNotInflight"},
	"OverLimit":                    {403, "OverLimit"},
	"PurgeQueueInProgress":         {403, "AWS.SimpleQueueService.PurgeQueueInProgress"},
	"QueueDeletedRecently":         {400, "AWS.SimpleQueueService.QueueDeletedRecently"},
	"QueueDoesNotExist":            {400, "AWS.SimpleQueueService.NonExistentQueue"},
	"QueueNameExists":              {400, "QueueAlreadyExists"},
	"ReceiptHandleIsInvalid":       {404, "ReceiptHandleIsInvalid"},
	"RequestThrottled":             {403, "RequestThrottled"},
	"TooManyEntriesInBatchRequest": {400, "AWS.SimpleQueueService.TooManyEntriesInBatchRequest"},
	"UnsupportedOperation":         {400, "AWS.SimpleQueueService.UnsupportedOperation"},
}

// sqsErr builds an SQS error with the status the service model gives the code.
func sqsErr(code, format string, args ...any) *apiError {
	status := http.StatusBadRequest
	if m, ok := sqsErrors[code]; ok {
		status = m.status
	}
	return errorf(status, code, format, args...)
}

// sqsErrorHeaders sets x-amzn-query-error ("<query code>;Sender|Receiver") and returns
// the __type for the JSON error body: the shape ID for modeled errors, the bare code for
// common ones (InvalidParameterValue, MissingParameter, AccessDenied, throttling, auth).
func sqsErrorHeaders(h http.Header, e *apiError) string {
	fault := "Sender"
	if e.Status >= 500 {
		fault = "Receiver"
	}
	typ, query := e.Code, e.Code
	if m, ok := sqsErrors[e.Code]; ok {
		typ, query = "com.amazonaws.sqs#"+e.Code, m.query
	}
	h.Set("X-Amzn-Query-Error", query+";"+fault)
	return typ
}

type sqsState struct {
	mu     sync.Mutex
	queues map[sqsQueueKey]*sqsQueue
	// wake is closed (and replaced) whenever a message becomes available somewhere, to
	// end waiting long polls.
	wake chan struct{}
}

func (s *Sandbox) sqs() *sqsState { return s.sqsState }

func newSQSState() *sqsState {
	return &sqsState{queues: map[sqsQueueKey]*sqsQueue{}, wake: make(chan struct{})}
}

// signal wakes long polls; st.mu must be held.
func (st *sqsState) signal() {
	close(st.wake)
	st.wake = make(chan struct{})
}

type sqsQueueKey struct{ account, region, name string }

type sqsQueue struct {
	key       sqsQueueKey
	arn       string
	created   time.Time
	modified  time.Time
	attrs     sqsAttrs
	messages  []*sqsMessage // in send order
	lastPurge time.Time
}

type sqsAttrs struct {
	visibilityTimeout int // seconds
	retention         int
	delay             int
	maxSize           int
	waitTime          int
	redrive           *redrivePolicy
	// policy is the queue's resource-based policy (the Policy attribute), evaluated for
	// sends; the other policy-like attributes are in extra, stored verbatim.
	policy *PolicyDocument
	extra  map[string]string // stored verbatim, not enforced
}

func defaultSQSAttrs() sqsAttrs {
	return sqsAttrs{visibilityTimeout: 30, retention: 345600, maxSize: sqsMaxMessageSize, extra: map[string]string{}}
}

type redrivePolicy struct {
	DeadLetterTargetArn string `json:"deadLetterTargetArn"`
	MaxReceiveCount     int    `json:"maxReceiveCount"`
}

type sqsMessage struct {
	id           string
	body         string
	md5Body      string
	attrs        map[string]msgAttr
	sender       string
	sent         time.Time
	visibleAt    time.Time // end of the delay or of the visibility timeout
	firstReceive time.Time
	receiveCount int
	receipt      string // latest receipt handle
}

func (m *sqsMessage) inFlight(now time.Time) bool {
	return m.receiveCount > 0 && now.Before(m.visibleAt)
}

// msgAttr is a MessageAttributeValue; []byte fields are base64 in JSON, as the protocol's blobs.
type msgAttr struct {
	DataType         string   `json:"DataType"`
	StringValue      *string  `json:"StringValue,omitempty"`
	BinaryValue      []byte   `json:"BinaryValue,omitempty"`
	StringListValues []string `json:"StringListValues,omitempty"`
	BinaryListValues [][]byte `json:"BinaryListValues,omitempty"`
}

// QueuedMessage is a snapshot of a message in an emulated queue.
type QueuedMessage struct {
	MessageID    string
	Body         string
	ReceiveCount int
	// Visible is true when a ReceiveMessage would return the message now (neither in
	// flight nor delayed).
	Visible bool
	SentAt  time.Time
}

// QueueMessages returns the messages of a queue, oldest first.
func (s *Sandbox) QueueMessages(accountID, region, queueName string) ([]QueuedMessage, error) {
	st := s.sqs()
	st.mu.Lock()
	defer st.mu.Unlock()
	q := st.queues[sqsQueueKey{accountID, region, queueName}]
	if q == nil {
		return nil, fmt.Errorf("sandbox: no queue %s in %s/%s", queueName, accountID, region)
	}
	now := s.now()
	q.expire(now)
	out := make([]QueuedMessage, 0, len(q.messages))
	for _, m := range q.messages {
		out = append(out, QueuedMessage{MessageID: m.id, Body: m.body, ReceiveCount: m.receiveCount, Visible: !now.Before(m.visibleAt), SentAt: m.sent})
	}
	return out, nil
}

// expire drops messages older than the retention period.
func (q *sqsQueue) expire(now time.Time) {
	keep := q.messages[:0]
	for _, m := range q.messages {
		if now.Before(m.sent.Add(time.Duration(q.attrs.retention) * time.Second)) {
			keep = append(keep, m)
		}
	}
	clear(q.messages[len(keep):])
	q.messages = keep
}

// sqsCall serves one SQS call; fault, when it fails entries, applies to a
// SendMessageBatch.
func (s *Sandbox) sqsCall(ctx context.Context, c *caller, op string, body []byte, entry *Entry, fault *APIFault) (any, *apiError) {
	var in sqsInput
	if aerr := decodeInput(body, &in); aerr != nil {
		return nil, aerr
	}
	if op == "ReceiveMessage" {
		return s.receiveMessage(ctx, c, &in, entry)
	}
	st := s.sqs()
	st.mu.Lock()
	defer st.mu.Unlock()
	now := s.now()
	if op == "CreateQueue" {
		return s.createQueue(st, c, &in, entry, now)
	}
	if op == "GetQueueUrl" {
		entry.Reference = in.QueueName
		owner := c.cred.account
		if in.QueueOwnerAWSAccountID != "" {
			owner = in.QueueOwnerAWSAccountID
		}
		q, aerr := st.queue(c, sqsQueueKey{owner, c.region, in.QueueName})
		if aerr != nil {
			return nil, aerr
		}
		return map[string]string{"QueueUrl": s.queueURL(q)}, nil
	}
	var q *sqsQueue
	switch op {
	case "GetQueueAttributes", "SetQueueAttributes", "DeleteQueue", "PurgeQueue", "SendMessage", "SendMessageBatch",
		"DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility", "ChangeMessageVisibilityBatch":
		var aerr *apiError
		if q, aerr = st.queueFromURL(c, in.QueueURL, entry); aerr != nil {
			return nil, aerr
		}
		q.expire(now)
	default:
		return nil, errorf(400, "UnknownOperationException", "the sandbox does not emulate sqs:%s", op)
	}
	switch op {
	case "GetQueueAttributes":
		return s.getQueueAttributes(q, in.AttributeNames, now)
	case "SetQueueAttributes":
		attrs := q.attrs
		attrs.extra = cloneMap(q.attrs.extra)
		if aerr := st.applyQueueAttrs(q.key, q.arn, in.Attributes, &attrs); aerr != nil {
			return nil, aerr
		}
		q.attrs, q.modified = attrs, now
		return struct{}{}, nil
	case "DeleteQueue":
		delete(st.queues, q.key)
		return struct{}{}, nil
	case "PurgeQueue":
		if !q.lastPurge.IsZero() && now.Sub(q.lastPurge) < sqsPurgeInterval {
			return nil, sqsErr("PurgeQueueInProgress", "Only one PurgeQueue operation on %s is allowed every 60 seconds.", q.key.name)
		}
		q.lastPurge = now
		clear(q.messages)
		q.messages = q.messages[:0]
		return struct{}{}, nil
	case "SendMessage":
		if aerr := s.callerMaySend(q, c); aerr != nil {
			return nil, aerr
		}
		m, aerr := s.newMessage(c.cred.accessKeyID, q, in.MessageBody, in.DelaySeconds, in.MessageAttributes, now)
		if aerr != nil {
			return nil, aerr
		}
		q.messages = append(q.messages, m)
		st.signal()
		return sendResult(m), nil
	case "SendMessageBatch":
		if aerr := s.callerMaySend(q, c); aerr != nil {
			return nil, aerr
		}
		return s.sendMessageBatch(st, c, q, in.Entries, now, fault)
	case "DeleteMessage":
		if aerr := q.deleteMessage(in.ReceiptHandle); aerr != nil {
			return nil, aerr
		}
		return struct{}{}, nil
	case "ChangeMessageVisibility":
		if aerr := st.changeVisibility(q, in.ReceiptHandle, in.VisibilityTimeout, now); aerr != nil {
			return nil, aerr
		}
		return struct{}{}, nil
	default: // DeleteMessageBatch, ChangeMessageVisibilityBatch
		if aerr := checkBatch(len(in.Entries), func(i int) string { return in.Entries[i].ID }); aerr != nil {
			return nil, aerr
		}
		out := newBatchResult()
		for _, e := range in.Entries {
			var aerr *apiError
			if op == "DeleteMessageBatch" {
				aerr = q.deleteMessage(e.ReceiptHandle)
			} else {
				aerr = st.changeVisibility(q, e.ReceiptHandle, e.VisibilityTimeout, now)
			}
			if aerr != nil {
				out.Failed = append(out.Failed, batchError(e.ID, aerr))
			} else {
				out.Successful = append(out.Successful, map[string]string{"Id": e.ID})
			}
		}
		return out, nil
	}
}

// sqsInput is the union of the request members of the emulated operations.
type sqsInput struct {
	QueueName              string             `json:"QueueName"`
	QueueOwnerAWSAccountID string             `json:"QueueOwnerAWSAccountId"`
	QueueURL               string             `json:"QueueUrl"`
	Attributes             map[string]string  `json:"Attributes"`
	AttributeNames         []string           `json:"AttributeNames"`
	MessageSystemAttrNames []string           `json:"MessageSystemAttributeNames"`
	MessageAttributeNames  []string           `json:"MessageAttributeNames"`
	MessageBody            *string            `json:"MessageBody"`
	DelaySeconds           *int               `json:"DelaySeconds"`
	MessageAttributes      map[string]msgAttr `json:"MessageAttributes"`
	MaxNumberOfMessages    *int               `json:"MaxNumberOfMessages"`
	VisibilityTimeout      *int               `json:"VisibilityTimeout"`
	WaitTimeSeconds        *int               `json:"WaitTimeSeconds"`
	ReceiptHandle          string             `json:"ReceiptHandle"`
	Entries                []sqsBatchInEntry  `json:"Entries"`
}

type sqsBatchInEntry struct {
	ID                string             `json:"Id"`
	MessageBody       *string            `json:"MessageBody"`
	DelaySeconds      *int               `json:"DelaySeconds"`
	MessageAttributes map[string]msgAttr `json:"MessageAttributes"`
	ReceiptHandle     string             `json:"ReceiptHandle"`
	VisibilityTimeout *int               `json:"VisibilityTimeout"`
}

type batchResult struct {
	Successful []any             `json:"Successful"`
	Failed     []batchErrorEntry `json:"Failed"`
}

type batchErrorEntry struct {
	ID          string `json:"Id"`
	SenderFault bool   `json:"SenderFault"`
	Code        string `json:"Code"`
	Message     string `json:"Message,omitempty"`
}

// newBatchResult starts a batch answer; both lists are required members, sent even empty.
func newBatchResult() batchResult {
	return batchResult{Successful: []any{}, Failed: []batchErrorEntry{}}
}

func batchError(id string, e *apiError) batchErrorEntry {
	return batchErrorEntry{ID: id, SenderFault: e.Status < 500, Code: e.Code, Message: e.Message}
}

type sendResultEntry struct {
	ID                     string `json:"Id,omitempty"`
	MessageID              string `json:"MessageId"`
	MD5OfMessageBody       string `json:"MD5OfMessageBody"`
	MD5OfMessageAttributes string `json:"MD5OfMessageAttributes,omitempty"`
}

func sendResult(m *sqsMessage) sendResultEntry {
	return sendResultEntry{MessageID: m.id, MD5OfMessageBody: m.md5Body, MD5OfMessageAttributes: md5OfAttributes(m.attrs)}
}

func (s *Sandbox) queueURL(q *sqsQueue) string {
	return s.apiURL + "/" + q.key.account + "/" + q.key.name
}

// queue finds a queue the caller may use; st.mu must be held.
func (st *sqsState) queue(c *caller, k sqsQueueKey) (*sqsQueue, *apiError) {
	q := st.queues[k]
	if q == nil {
		return nil, sqsErr("QueueDoesNotExist", "The specified queue does not exist.")
	}
	if k.account != c.cred.account {
		return nil, errorf(403, "AccessDenied", "Access to the resource %s is denied (the sandbox has no queue policies).", q.arn)
	}
	return q, nil
}

// queueFromURL resolves a queue URL, <endpoint>/<account>/<name>, whatever its host.
func (st *sqsState) queueFromURL(c *caller, raw string, entry *Entry) (*sqsQueue, *apiError) {
	if raw == "" {
		return nil, errorf(400, "MissingParameter", "The request must contain the parameter QueueUrl.")
	}
	u, err := url.Parse(raw)
	parts := []string{}
	if err == nil {
		parts = strings.Split(strings.Trim(u.Path, "/"), "/")
	}
	if len(parts) != 2 || !isAccountID(parts[0]) || !queueNamePattern.MatchString(parts[1]) {
		return nil, sqsErr("InvalidAddress", "The address %s is not valid for this endpoint.", raw)
	}
	entry.Reference = parts[1]
	return st.queue(c, sqsQueueKey{parts[0], c.region, parts[1]})
}

func (s *Sandbox) createQueue(st *sqsState, c *caller, in *sqsInput, entry *Entry, now time.Time) (any, *apiError) {
	entry.Reference = in.QueueName
	if strings.HasSuffix(in.QueueName, ".fifo") {
		return nil, errorf(400, "InvalidParameterValue", "The sandbox does not emulate FIFO queues (%s).", in.QueueName)
	}
	if !queueNamePattern.MatchString(in.QueueName) {
		return nil, errorf(400, "InvalidParameterValue", "Can only include alphanumeric characters, hyphens, or underscores. 1 to 80 in length")
	}
	k := sqsQueueKey{c.cred.account, c.region, in.QueueName}
	arn := fmt.Sprintf("arn:aws:sqs:%s:%s:%s", k.region, k.account, k.name)
	attrs := defaultSQSAttrs()
	if aerr := st.applyQueueAttrs(k, arn, in.Attributes, &attrs); aerr != nil {
		return nil, aerr
	}
	if q := st.queues[k]; q != nil {
		// Idempotent when every given attribute matches the existing queue's.
		current, want := q.attributeValues(0, 0, 0), (&sqsQueue{attrs: attrs}).attributeValues(0, 0, 0)
		for name := range in.Attributes {
			if current[name] != want[name] {
				return nil, sqsErr("QueueNameExists", "A queue already exists with the same name and a different value for attribute %s", name)
			}
		}
		return map[string]string{"QueueUrl": s.queueURL(q)}, nil
	}
	q := &sqsQueue{key: k, arn: arn, created: now, modified: now, attrs: attrs}
	st.queues[k] = q
	return map[string]string{"QueueUrl": s.queueURL(q)}, nil
}

// applyQueueAttrs validates and applies settable queue attributes; st.mu must be held.
func (st *sqsState) applyQueueAttrs(k sqsQueueKey, arn string, in map[string]string, a *sqsAttrs) *apiError {
	names := make([]string, 0, len(in))
	for n := range in {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		v := in[name]
		num := func(min, max int) (int, *apiError) {
			n, err := strconv.Atoi(v)
			if err != nil || n < min || n > max {
				return 0, sqsErr("InvalidAttributeValue", "Invalid value for the parameter %s.", name)
			}
			return n, nil
		}
		var aerr *apiError
		switch name {
		case "VisibilityTimeout":
			a.visibilityTimeout, aerr = num(0, sqsMaxVisibility)
		case "MessageRetentionPeriod":
			a.retention, aerr = num(60, 1209600)
		case "DelaySeconds":
			a.delay, aerr = num(0, sqsMaxDelaySeconds)
		case "MaximumMessageSize":
			a.maxSize, aerr = num(1024, sqsMaxMessageSize)
		case "ReceiveMessageWaitTimeSeconds":
			a.waitTime, aerr = num(0, sqsMaxWaitTimeSeconds)
		case "RedrivePolicy":
			if v == "" {
				a.redrive = nil
				continue
			}
			a.redrive, aerr = st.parseRedrive(k, arn, v)
		case "Policy":
			a.extra[name] = v
			a.policy = nil
			if v != "" {
				p, err := ParsePolicy(v)
				if err != nil {
					aerr = sqsErr("InvalidAttributeValue", "Invalid value for the parameter Policy: %v", err)
				}
				a.policy = &p
			}
		case "RedriveAllowPolicy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds", "SqsManagedSseEnabled":
			a.extra[name] = v
		case "FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit":
			aerr = sqsErr("InvalidAttributeName", "The sandbox does not emulate FIFO queues (attribute %s).", name)
		default:
			aerr = sqsErr("InvalidAttributeName", "Unknown Attribute %s.", name)
		}
		if aerr != nil {
			return aerr
		}
	}
	return nil
}

func (st *sqsState) parseRedrive(k sqsQueueKey, arn, v string) (*redrivePolicy, *apiError) {
	bad := func(reason string) (*redrivePolicy, *apiError) {
		return nil, sqsErr("InvalidAttributeValue", "Value %s for parameter RedrivePolicy is invalid. Reason: %s", v, reason)
	}
	var raw struct {
		DeadLetterTargetArn string          `json:"deadLetterTargetArn"`
		MaxReceiveCount     json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(v), &raw); err != nil {
		return bad("Redrive policy is not a valid JSON map.")
	}
	// maxReceiveCount comes as a number or as a string of digits.
	n, err := strconv.Atoi(strings.Trim(string(raw.MaxReceiveCount), `"`))
	if err != nil || n < 1 || n > 1000 {
		return bad("Invalid value for maxReceiveCount: must be an integer from 1 to 1000.")
	}
	m := sqsARNPattern.FindStringSubmatch(raw.DeadLetterTargetArn)
	if m == nil {
		return bad("Invalid value for deadLetterTargetArn.")
	}
	if m[1] != k.region || m[2] != k.account {
		return bad("Dead-letter target must be in the same account and region as the source queue.")
	}
	if raw.DeadLetterTargetArn == arn {
		return bad("Dead-letter target must not be the queue itself.")
	}
	if st.queues[sqsQueueKey{m[2], m[1], m[3]}] == nil {
		return bad("Dead letter target does not exist.")
	}
	return &redrivePolicy{DeadLetterTargetArn: raw.DeadLetterTargetArn, MaxReceiveCount: n}, nil
}

// attributeValues renders every readable queue attribute.
func (q *sqsQueue) attributeValues(visible, inFlight, delayed int) map[string]string {
	a := q.attrs
	out := map[string]string{
		"ApproximateNumberOfMessages":           strconv.Itoa(visible),
		"ApproximateNumberOfMessagesNotVisible": strconv.Itoa(inFlight),
		"ApproximateNumberOfMessagesDelayed":    strconv.Itoa(delayed),
		"CreatedTimestamp":                      strconv.FormatInt(q.created.Unix(), 10),
		"LastModifiedTimestamp":                 strconv.FormatInt(q.modified.Unix(), 10),
		"DelaySeconds":                          strconv.Itoa(a.delay),
		"MaximumMessageSize":                    strconv.Itoa(a.maxSize),
		"MessageRetentionPeriod":                strconv.Itoa(a.retention),
		"QueueArn":                              q.arn,
		"ReceiveMessageWaitTimeSeconds":         strconv.Itoa(a.waitTime),
		"VisibilityTimeout":                     strconv.Itoa(a.visibilityTimeout),
	}
	if a.redrive != nil {
		b, _ := json.Marshal(a.redrive)
		out["RedrivePolicy"] = string(b)
	}
	for k, v := range a.extra {
		out[k] = v
	}
	return out
}

func (s *Sandbox) getQueueAttributes(q *sqsQueue, names []string, now time.Time) (any, *apiError) {
	var visible, inFlight, delayed int
	for _, m := range q.messages {
		switch {
		case !now.Before(m.visibleAt):
			visible++
		case m.receiveCount > 0:
			inFlight++
		default:
			delayed++
		}
	}
	all := q.attributeValues(visible, inFlight, delayed)
	out := map[string]string{}
	for _, n := range names {
		if n == "All" {
			out = all
			break
		}
		v, ok := all[n]
		if !ok {
			if !knownQueueAttribute(n) {
				return nil, sqsErr("InvalidAttributeName", "Unknown Attribute %s.", n)
			}
			continue // known but unset (RedrivePolicy, Policy…)
		}
		out[n] = v
	}
	resp := map[string]any{}
	if len(out) > 0 {
		resp["Attributes"] = out
	}
	return resp, nil
}

func knownQueueAttribute(n string) bool {
	switch n {
	case "Policy", "RedrivePolicy", "RedriveAllowPolicy", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds",
		"SqsManagedSseEnabled", "FifoQueue", "ContentBasedDeduplication", "DeduplicationScope", "FifoThroughputLimit":
		return true
	}
	return false
}

// newMessage validates a message as SendMessage(Batch) does; sender is its SenderId.
func (s *Sandbox) newMessage(sender string, q *sqsQueue, body *string, delay *int, attrs map[string]msgAttr, now time.Time) (*sqsMessage, *apiError) {
	if body == nil || *body == "" {
		return nil, errorf(400, "MissingParameter", "The request must contain the parameter MessageBody.")
	}
	if !validMessageText(*body) {
		return nil, sqsErr("InvalidMessageContents", "Invalid characters found. Valid unicode characters are #x9 | #xA | #xD | #x20 to #xD7FF | #xE000 to #xFFFD | #x10000 to #x10FFFF")
	}
	d := q.attrs.delay
	if delay != nil {
		if *delay < 0 || *delay > sqsMaxDelaySeconds {
			return nil, errorf(400, "InvalidParameterValue", "Value %d for parameter DelaySeconds is invalid. Reason: DelaySeconds must be >= 0 and <= 900.", *delay)
		}
		d = *delay
	}
	size, aerr := validateMessageAttributes(attrs)
	if aerr != nil {
		return nil, aerr
	}
	if size += len(*body); size > q.attrs.maxSize {
		return nil, errorf(400, "InvalidParameterValue", "One or more parameters are invalid. Reason: Message must be shorter than %d bytes.", q.attrs.maxSize)
	}
	sum := md5.Sum([]byte(*body))
	return &sqsMessage{
		id:        newUUID(),
		body:      *body,
		md5Body:   hex.EncodeToString(sum[:]),
		attrs:     attrs,
		sender:    sender,
		sent:      now,
		visibleAt: now.Add(time.Duration(d) * time.Second),
	}, nil
}

func validMessageText(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !(r == 0x9 || r == 0xA || r == 0xD || (r >= 0x20 && r <= 0xD7FF) || (r >= 0xE000 && r <= 0xFFFD) || (r >= 0x10000 && r <= 0x10FFFF)) {
			return false
		}
	}
	return true
}

// validateMessageAttributes checks message attributes and returns their size (names,
// types and values count towards the message size).
func validateMessageAttributes(attrs map[string]msgAttr) (int, *apiError) {
	if len(attrs) > sqsMaxAttributes {
		return 0, errorf(400, "InvalidParameterValue", "Number of message attributes [%d] exceeds the allowed maximum [%d].", len(attrs), sqsMaxAttributes)
	}
	size := 0
	for name, a := range attrs {
		lower := strings.ToLower(name)
		if !attrNamePattern.MatchString(name) || strings.HasPrefix(lower, "aws.") || strings.HasPrefix(lower, "amazon.") ||
			strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".") || strings.Contains(name, "..") {
			return 0, errorf(400, "InvalidParameterValue", "Message (user) attribute name '%s' is invalid.", name)
		}
		base, _, _ := strings.Cut(a.DataType, ".")
		switch {
		case (base == "String" || base == "Number") && a.StringValue != nil && *a.StringValue != "":
			size += len(*a.StringValue)
		case base == "Binary" && len(a.BinaryValue) > 0:
			size += len(a.BinaryValue)
		default:
			return 0, errorf(400, "InvalidParameterValue", "Message (user) attribute '%s' must have a DataType of String, Number or Binary and a matching non-empty value.", name)
		}
		size += len(name) + len(a.DataType)
	}
	return size, nil
}

// md5OfAttributes is SQS's MD5OfMessageAttributes: for each attribute in name order, the
// 4-byte big-endian length and bytes of the name, of the data type, a transport byte (1
// string, 2 binary), and the length and bytes of the value.
func md5OfAttributes(attrs map[string]msgAttr) string {
	if len(attrs) == 0 {
		return ""
	}
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	put := func(b []byte) {
		buf.Write(binary.BigEndian.AppendUint32(nil, uint32(len(b))))
		buf.Write(b)
	}
	for _, n := range names {
		a := attrs[n]
		put([]byte(n))
		put([]byte(a.DataType))
		if a.StringValue != nil {
			buf.WriteByte(1)
			put([]byte(*a.StringValue))
		} else {
			buf.WriteByte(2)
			put(a.BinaryValue)
		}
	}
	sum := md5.Sum(buf.Bytes())
	return hex.EncodeToString(sum[:])
}

// checkBatch applies the rules every batch operation shares.
func checkBatch(n int, id func(int) string) *apiError {
	if n == 0 {
		return sqsErr("EmptyBatchRequest", "There should be at least one entry in the request.")
	}
	if n > sqsMaxBatchEntries {
		return sqsErr("TooManyEntriesInBatchRequest", "Maximum number of entries per request are %d. You have sent %d.", sqsMaxBatchEntries, n)
	}
	seen := map[string]bool{}
	for i := 0; i < n; i++ {
		if !batchEntryIDPattern.MatchString(id(i)) {
			return sqsErr("InvalidBatchEntryId", "A batch entry id can only contain alphanumeric characters, hyphens and underscores. It can be at most 80 letters long.")
		}
		if seen[id(i)] {
			return sqsErr("BatchEntryIdsNotDistinct", "Id %s repeated.", id(i))
		}
		seen[id(i)] = true
	}
	return nil
}

func (s *Sandbox) sendMessageBatch(st *sqsState, c *caller, q *sqsQueue, entries []sqsBatchInEntry, now time.Time, fault *APIFault) (any, *apiError) {
	if aerr := checkBatch(len(entries), func(i int) string { return entries[i].ID }); aerr != nil {
		return nil, aerr
	}
	total := 0
	for _, e := range entries {
		if e.MessageBody != nil {
			total += len(*e.MessageBody)
		}
		for name, a := range e.MessageAttributes {
			total += len(name) + len(a.DataType) + len(a.BinaryValue)
			if a.StringValue != nil {
				total += len(*a.StringValue)
			}
		}
	}
	if total > sqsMaxMessageSize {
		return nil, sqsErr("BatchRequestTooLong", "Batch requests cannot be longer than %d bytes. You have sent %d bytes.", sqsMaxMessageSize, total)
	}
	out := newBatchResult()
	failFrom := len(entries) // entries from here on are failed by an injected fault
	if fault != nil && fault.Entries > 0 {
		failFrom = max(0, len(entries)-fault.Entries)
	}
	for i, e := range entries {
		if i >= failFrom {
			// A batch answer lists each entry's failure; SenderFault false means SQS's
			// side failed and the entry may be sent again
			// (https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_BatchResultErrorEntry.html).
			out.Failed = append(out.Failed, batchErrorEntry{ID: e.ID, SenderFault: fault.SenderFault, Code: fault.Code, Message: "injected fault"})
			continue
		}
		m, aerr := s.newMessage(c.cred.accessKeyID, q, e.MessageBody, e.DelaySeconds, e.MessageAttributes, now)
		if aerr != nil {
			out.Failed = append(out.Failed, batchError(e.ID, aerr))
			continue
		}
		q.messages = append(q.messages, m)
		r := sendResult(m)
		r.ID = e.ID
		out.Successful = append(out.Successful, r)
	}
	if len(out.Successful) > 0 {
		st.signal()
	}
	return out, nil
}

// Receipt handles name the queue and message and change with every receive.
func newReceiptHandle(q *sqsQueue, m *sqsMessage) string {
	return base64.RawURLEncoding.EncodeToString([]byte(q.arn + " " + m.id + " " + randomString(24, upperAlnum)))
}

// findReceipt returns the message a receipt handle names (nil when it is gone), or
// ReceiptHandleIsInvalid for a handle this queue never issued.
func (q *sqsQueue) findReceipt(handle string) (*sqsMessage, int, *apiError) {
	raw, err := base64.RawURLEncoding.DecodeString(handle)
	f := strings.Split(string(raw), " ")
	if handle == "" || err != nil || len(f) != 3 || f[0] != q.arn {
		return nil, -1, sqsErr("ReceiptHandleIsInvalid", "The input receipt handle \"%s\" is not a valid receipt handle.", handle)
	}
	for i, m := range q.messages {
		if m.id == f[1] {
			return m, i, nil
		}
	}
	return nil, -1, nil
}

// deleteMessage follows AWS: only the latest receipt handle deletes a message; an older
// one, or one of a message already deleted, succeeds without effect.
// https://docs.aws.amazon.com/AWSSimpleQueueService/latest/APIReference/API_DeleteMessage.html
func (q *sqsQueue) deleteMessage(handle string) *apiError {
	m, i, aerr := q.findReceipt(handle)
	if aerr != nil || m == nil || m.receipt != handle {
		return aerr
	}
	q.messages = append(q.messages[:i], q.messages[i+1:]...)
	return nil
}

func (st *sqsState) changeVisibility(q *sqsQueue, handle string, timeout *int, now time.Time) *apiError {
	if timeout == nil {
		return errorf(400, "MissingParameter", "The request must contain the parameter VisibilityTimeout.")
	}
	if *timeout < 0 || *timeout > sqsMaxVisibility {
		return errorf(400, "InvalidParameterValue", "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be between 0 and 43200.", *timeout)
	}
	m, _, aerr := q.findReceipt(handle)
	if aerr != nil {
		return aerr
	}
	if m == nil || m.receipt != handle {
		return sqsErr("ReceiptHandleIsInvalid", "The receipt handle has expired.")
	}
	if !m.inFlight(now) {
		return sqsErr("MessageNotInflight", "The message referred to is not in flight.")
	}
	m.visibleAt = now.Add(time.Duration(*timeout) * time.Second)
	if *timeout == 0 {
		st.signal()
	}
	return nil
}

type sqsMessageOut struct {
	MessageID              string             `json:"MessageId"`
	ReceiptHandle          string             `json:"ReceiptHandle"`
	MD5OfBody              string             `json:"MD5OfBody"`
	Body                   string             `json:"Body"`
	Attributes             map[string]string  `json:"Attributes,omitempty"`
	MD5OfMessageAttributes string             `json:"MD5OfMessageAttributes,omitempty"`
	MessageAttributes      map[string]msgAttr `json:"MessageAttributes,omitempty"`
}

func (s *Sandbox) receiveMessage(ctx context.Context, c *caller, in *sqsInput, entry *Entry) (any, *apiError) {
	max := 1
	if in.MaxNumberOfMessages != nil {
		max = *in.MaxNumberOfMessages
		if max < 1 || max > sqsMaxBatchEntries {
			return nil, errorf(400, "InvalidParameterValue", "Value %d for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10, if provided.", max)
		}
	}
	if v := in.VisibilityTimeout; v != nil && (*v < 0 || *v > sqsMaxVisibility) {
		return nil, errorf(400, "InvalidParameterValue", "Value %d for parameter VisibilityTimeout is invalid. Reason: Must be >= 0 and <= 43200, if provided.", *v)
	}
	if w := in.WaitTimeSeconds; w != nil && (*w < 0 || *w > sqsMaxWaitTimeSeconds) {
		return nil, errorf(400, "InvalidParameterValue", "Value %d for parameter WaitTimeSeconds is invalid. Reason: Must be >= 0 and <= 20, if provided.", *w)
	}
	sysNames := append(append([]string(nil), in.AttributeNames...), in.MessageSystemAttrNames...)
	st := s.sqs()
	var deadline time.Time
	for first := true; ; first = false {
		st.mu.Lock()
		q, aerr := st.queueFromURL(c, in.QueueURL, entry)
		if aerr != nil {
			st.mu.Unlock()
			return nil, aerr
		}
		if first {
			wait := q.attrs.waitTime
			if in.WaitTimeSeconds != nil {
				wait = *in.WaitTimeSeconds
			}
			deadline = time.Now().Add(time.Duration(wait) * time.Second)
		}
		msgs := st.take(s, q, max, in.VisibilityTimeout, sysNames, in.MessageAttributeNames)
		wake := st.wake
		st.mu.Unlock()
		remaining := time.Until(deadline)
		if len(msgs) > 0 || remaining <= 0 {
			return receiveResult(msgs), nil
		}
		t := time.NewTimer(min(remaining, sqsPollInterval))
		select {
		case <-ctx.Done():
			t.Stop()
			return receiveResult(nil), nil
		case <-wake:
		case <-t.C:
		}
		t.Stop()
	}
}

func receiveResult(msgs []sqsMessageOut) map[string]any {
	if len(msgs) == 0 {
		return map[string]any{} // as AWS: no Messages member when nothing was received
	}
	return map[string]any{"Messages": msgs}
}

// take receives up to max visible messages, first moving those received maxReceiveCount
// times to the dead-letter queue; st.mu must be held.
func (st *sqsState) take(s *Sandbox, q *sqsQueue, max int, visibility *int, sysNames, attrNames []string) []sqsMessageOut {
	now := s.now()
	q.expire(now)
	vis := q.attrs.visibilityTimeout
	if visibility != nil {
		vis = *visibility
	}
	var out []sqsMessageOut
	keep := q.messages[:0]
	for _, m := range q.messages {
		if len(out) == max || now.Before(m.visibleAt) {
			keep = append(keep, m)
			continue
		}
		if rp := q.attrs.redrive; rp != nil && m.receiveCount >= rp.MaxReceiveCount {
			if dlq := st.queueByARN(rp.DeadLetterTargetArn); dlq != nil {
				m.visibleAt, m.receipt = now, ""
				dlq.messages = append(dlq.messages, m)
				st.signal()
				continue
			}
		}
		m.receiveCount++
		if m.firstReceive.IsZero() {
			m.firstReceive = now
		}
		m.receipt = newReceiptHandle(q, m)
		m.visibleAt = now.Add(time.Duration(vis) * time.Second)
		keep = append(keep, m)
		out = append(out, messageOut(m, sysNames, attrNames))
	}
	clear(q.messages[len(keep):])
	q.messages = keep
	return out
}

// sendInternal is SendMessage on behalf of an AWS service (EventBridge delivering to a
// rule's target): the same checks and limits as a caller's SendMessage, no access-log
// entry, no caller. It returns the message ID.
func (s *Sandbox) sendInternal(queueARN, sender, body string, from serviceSender) (string, *apiError) {
	st := s.sqs()
	st.mu.Lock()
	defer st.mu.Unlock()
	q := st.queueByARN(queueARN)
	if q == nil {
		return "", sqsErr("QueueDoesNotExist", "The specified queue does not exist.")
	}
	if aerr := q.serviceMaySend(from); aerr != nil {
		return "", aerr
	}
	now := s.now()
	q.expire(now)
	m, aerr := s.newMessage(sender, q, &body, nil, nil, now)
	if aerr != nil {
		return "", aerr
	}
	q.messages = append(q.messages, m)
	st.signal()
	return m.id, nil
}

func (st *sqsState) queueByARN(arn string) *sqsQueue {
	m := sqsARNPattern.FindStringSubmatch(arn)
	if m == nil {
		return nil
	}
	return st.queues[sqsQueueKey{m[2], m[1], m[3]}]
}

func messageOut(m *sqsMessage, sysNames, attrNames []string) sqsMessageOut {
	out := sqsMessageOut{MessageID: m.id, ReceiptHandle: m.receipt, MD5OfBody: m.md5Body, Body: m.body}
	sys := map[string]string{
		"ApproximateReceiveCount":          strconv.Itoa(m.receiveCount),
		"ApproximateFirstReceiveTimestamp": strconv.FormatInt(m.firstReceive.UnixMilli(), 10),
		"SentTimestamp":                    strconv.FormatInt(m.sent.UnixMilli(), 10),
		"SenderId":                         m.sender,
	}
	for _, n := range sysNames {
		if n == "All" {
			out.Attributes = sys
			break
		}
		if v, ok := sys[n]; ok {
			if out.Attributes == nil {
				out.Attributes = map[string]string{}
			}
			out.Attributes[n] = v
		}
	}
	for name, a := range m.attrs {
		for _, want := range attrNames {
			if want == "All" || want == ".*" || want == name ||
				(strings.HasSuffix(want, ".*") && strings.HasPrefix(name, strings.TrimSuffix(want, "*"))) {
				if out.MessageAttributes == nil {
					out.MessageAttributes = map[string]msgAttr{}
				}
				out.MessageAttributes[name] = a
				break
			}
		}
	}
	out.MD5OfMessageAttributes = md5OfAttributes(out.MessageAttributes)
	return out
}

func cloneMap(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// newUUID returns a random (version 4) UUID, the shape of SQS message and event IDs.
func newUUID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// serviceSender is an AWS service sending on a resource's behalf (EventBridge for a rule).
type serviceSender struct {
	service   string // "events.amazonaws.com"
	sourceARN string // the rule
	account   string // the rule's account
}

// serviceMaySend evaluates the queue's policy for a service's send: a queue with a policy
// receives only what an Allow statement for the service admits and no Deny refuses
// (Amazon SQS resource-based policies; EventBridge needs the queue's policy to allow
// events.amazonaws.com, https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-resource-based.html#eb-sqs-permissions).
// A queue without a policy receives (a simplification: AWS would refuse).
func (q *sqsQueue) serviceMaySend(from serviceSender) *apiError {
	if q.attrs.policy == nil {
		return nil
	}
	ctx := condCtx{}
	ctx.set("aws:SourceArn", from.sourceARN)
	ctx.set("aws:SourceAccount", from.account)
	allowed, denied := resourceDecision(*q.attrs.policy, request{action: "sqs:SendMessage", resource: q.arn, principal: "service:" + from.service, context: ctx}, "", "")
	if denied || !allowed {
		return errorf(403, "AccessDenied", "the policy of %s does not allow %s to send (aws:SourceArn %s)", q.arn, from.service, from.sourceARN)
	}
	return nil
}

// callerMaySend evaluates the queue's policy for a caller's send: an explicit Deny in it
// refuses, whatever the caller's own policies allow (the caller's identity policies were
// checked before the call).
func (s *Sandbox) callerMaySend(q *sqsQueue, c *caller) *apiError {
	if q.attrs.policy == nil {
		return nil
	}
	ctx := s.principalContext(c.cred, c.region)
	_, denied := resourceDecision(*q.attrs.policy, request{action: "sqs:SendMessage", resource: q.arn, principal: c.cred.principalARN, context: ctx}, c.cred.roleARN, c.cred.account)
	if denied {
		return errorf(403, "AccessDenied", "User: %s is not authorized to perform: sqs:SendMessage on resource: %s with an explicit deny in a resource-based policy", c.cred.principalARN, q.arn)
	}
	return nil
}
