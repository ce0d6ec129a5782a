package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/validate"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/eventhandler"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/wiring"
)

const (
	region  = sandbox.DefaultRegion
	srcAcct = sandbox.SourceAccount
	dstAcct = sandbox.DestinationAccount
	prefix  = "mirror/"
	// maxDeliveries bounds the simulated SQS redelivery of one batch (the queue's
	// maxReceiveCount would send it to the DLQ after as many).
	maxDeliveries = 6
)

// rulesDoc replicates team-a/** to the destination account under mirror/, digest-only
// images included.
func rulesDoc(extID string, mirrorDeletes bool) string {
	return fmt.Sprintf(`{"rules":[{"name":"rel","repositories":["team-a/**"],"untagged":true,"mirrorDeletes":%t,
"destinations":[{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":%q,"createRepository":true}]}]}`,
		mirrorDeletes, dstAcct, region, sandbox.RoleARN(dstAcct, sandbox.DestinationRole), extID, prefix)
}

type lockedBuffer = sandboxtest.LogBuffer

// fx is one scenario: a sandbox, a handler built the way functions/replicate builds it,
// and a JSON log sink that is scanned for secrets when the test ends.
type fx struct {
	w      *sandboxtest.World
	sb     *sandbox.Sandbox
	ctx    context.Context
	logs   *lockedBuffer
	deps   *wiring.Deps
	h      *eventhandler.Handler
	rnd    *rand.Rand
	msgN   atomic.Int64
	engine []copyengine.Option // the engine options every handler of the scenario gets
	// redeliveries counts the simulated SQS redeliveries of this scenario.
	redeliveries atomic.Int64
}

type fxOption struct {
	rules      func(extID string) string
	maxAttempt string
	engine     []copyengine.Option
	reserve    time.Duration
}

// newFx starts a scenario. seed drives every random choice in it.
func newFx(t testing.TB, seed int64, opts ...func(*fxOption)) *fx {
	t.Helper()
	o := fxOption{rules: func(e string) string { return rulesDoc(e, false) }}
	for _, f := range opts {
		f(&o)
	}
	w := sandboxtest.Start(t)
	t.Setenv("REPLICATION_RULES", o.rules(w.ExternalID))
	t.Setenv("REPLICATION_RULES_FILE", "")
	t.Setenv("REPLICATION_QUEUE_URL", "")
	t.Setenv("RESULT_EVENT_BUS", "")
	if o.maxAttempt != "" {
		t.Setenv("AWS_MAX_ATTEMPTS", o.maxAttempt)
	}
	f := &fx{w: w, sb: w.SB, ctx: w.Ctx, logs: &lockedBuffer{}, rnd: rand.New(rand.NewSource(seed))}
	// Debug level: the most the function can ever log.
	log := wiring.Logger(f.logs, func(k string) string {
		if k == "LOG_LEVEL" {
			return "debug"
		}
		return ""
	})
	deps, err := wiring.Load(f.ctx, "replicate", log, os.Getenv, o.engine...)
	if err != nil {
		t.Fatal(err)
	}
	f.deps, f.engine = deps, o.engine
	f.h = sandboxtest.ReplicateHandler(deps, eventhandler.Config{Log: log, Reserve: o.reserve})
	t.Cleanup(func() { assertNoSecrets(t, f, f.logs.String()) })
	return f
}

func withEngine(opts ...copyengine.Option) func(*fxOption) {
	return func(o *fxOption) { o.engine = opts }
}

// withReserve sets the handler's reserve before the deadline (eventhandler.Config.Reserve).
func withReserve(d time.Duration) func(*fxOption) {
	return func(o *fxOption) { o.reserve = d }
}

func withRules(r func(extID string) string) func(*fxOption) {
	return func(o *fxOption) { o.rules = r }
}

// image returns a seeded random image: layers of size bytes each.
func (f *fx) image(t testing.TB, size, layers int64) v1.Image {
	t.Helper()
	img, err := random.Image(size, layers, random.WithSource(rand.NewSource(f.rnd.Int63())))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// push creates the source repository if needed and pushes img under tag ("" = digest only).
func (f *fx) push(t testing.TB, repo, tag string, img v1.Image) string {
	t.Helper()
	_, err := ecr.NewFromConfig(f.w.Source.Config).CreateRepository(f.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
	if err != nil && !strings.Contains(err.Error(), "RepositoryAlreadyExists") {
		t.Fatal(err)
	}
	return f.w.Source.Push(t, repo, tag, img).String()
}

func (f *fx) deleteSource(t testing.TB, repo string, id ecrtypes.ImageIdentifier) {
	t.Helper()
	out, err := ecr.NewFromConfig(f.w.Source.Config).BatchDeleteImage(f.ctx, &ecr.BatchDeleteImageInput{
		RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{id},
	})
	if err != nil || len(out.Failures) > 0 {
		t.Fatalf("deleting %s %v: %v %+v", repo, id, err, out)
	}
}

type record = sandboxtest.SQSMessage

func (f *fx) records(bodies ...string) []record {
	out := make([]record, len(bodies))
	for i, b := range bodies {
		out[i] = record{ID: fmt.Sprintf("msg-%d", f.msgN.Add(1)), Body: b}
	}
	return out
}

// deliverStats is what one simulated SQS delivery sequence did.
type deliverStats struct {
	invocations int
	// failures lists the batchItemFailures of each invocation.
	failures [][]string
}

// deliver simulates SQS: it invokes the handler with the batch, then redelivers the
// records listed in batchItemFailures, until none is left or maxDeliveries is reached.
// ctxFor gives the invocation context of each attempt (nil: the scenario's context).
func (f *fx) deliver(t testing.TB, recs []record, ctxFor func(attempt int) (context.Context, context.CancelFunc)) deliverStats {
	t.Helper()
	var st deliverStats
	pending := recs
	for attempt := 1; len(pending) > 0; attempt++ {
		if attempt > maxDeliveries {
			t.Errorf("records still failing after %d deliveries: %v", maxDeliveries, st.failures[len(st.failures)-1])
			return st
		}
		if attempt > 1 {
			f.redeliveries.Add(int64(len(pending)))
		}
		ctx, cancel := f.ctx, context.CancelFunc(func() {})
		if ctxFor != nil {
			ctx, cancel = ctxFor(attempt)
		}
		out, err := f.h.Handle(ctx, sandboxtest.SQSBatch(attempt, pending...))
		cancel()
		st.invocations++
		if err != nil {
			t.Errorf("Handle (delivery %d): %v", attempt, err)
			return st
		}
		resp, ok := out.(events.SQSEventResponse)
		if !ok {
			t.Errorf("Handle answered %T to an SQS batch", out)
			return st
		}
		failed := map[string]bool{}
		var ids []string
		for _, fi := range resp.BatchItemFailures {
			failed[fi.ItemIdentifier] = true
			ids = append(ids, fi.ItemIdentifier)
		}
		st.failures = append(st.failures, ids)
		var next []record
		for _, r := range pending {
			if failed[r.ID] {
				next = append(next, r)
				delete(failed, r.ID)
			}
		}
		if len(failed) > 0 {
			t.Errorf("batchItemFailures name records not in the batch: %v", failed)
		}
		pending = next
	}
	return st
}

// direct invokes the handler directly with one event and returns the summary or error.
func (f *fx) direct(t testing.TB, body string) (eventhandler.Summary, error) {
	t.Helper()
	out, err := f.h.Handle(f.ctx, json.RawMessage(body))
	if err != nil {
		return eventhandler.Summary{}, err
	}
	return out.(eventhandler.Summary), nil
}

// destAuth logs in to the destination registry as its admin (afresh: tests expire tokens).
func (f *fx) dest(t testing.TB) sandboxtest.Side {
	t.Helper()
	s := f.w.Dest
	s.Host, s.Auth = sandboxtest.Login(t, f.ctx, s.Config)
	return s
}

// verify checks the destination of a source repository: its tags equal the source's,
// and every tagged image (and each of extraDigests) is complete and correct: manifest,
// config and layers fetched and verified against their digests by go-containerregistry.
func (f *fx) verify(t testing.TB, repo string, extraDigests ...string) map[string]string {
	t.Helper()
	src := f.w.Source.Tags(t, f.ctx, repo)
	dst := f.w.Dest.Tags(t, f.ctx, prefix+repo)
	if fmt.Sprint(src) != fmt.Sprint(dst) {
		t.Errorf("%s: destination tags %v, source tags %v", repo, dst, src)
	}
	d := f.dest(t)
	seen := map[string]bool{}
	for _, dg := range append(values(dst), extraDigests...) {
		if seen[dg] {
			continue
		}
		seen[dg] = true
		f.verifyImage(t, d, prefix+repo, dg)
	}
	return dst
}

func (f *fx) verifyImage(t testing.TB, d sandboxtest.Side, repo, digest string) {
	t.Helper()
	img, err := remote.Image(d.Ref(t, repo, digest), remote.WithAuth(d.Auth), remote.WithContext(f.ctx))
	if err != nil {
		t.Errorf("destination %s@%s: %v", repo, digest, err)
		return
	}
	if err := validate.Image(img); err != nil {
		t.Errorf("destination %s@%s is incomplete or corrupt: %v", repo, digest, err)
	}
	if got, _ := img.Digest(); got.String() != digest {
		t.Errorf("destination %s@%s has digest %s", repo, digest, got)
	}
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

// uploadsTo counts, per digest, the completed blob uploads (PUT upload with a 201) to
// the destination since mark. The digest is the PUT's reference.
func (f *fx) uploadsSince(mark int) map[string]int {
	out := map[string]int{}
	for _, e := range f.sb.AccessLogSince(mark) {
		if e.Service == "registry" && e.Account == dstAcct && e.Operation == "PUT upload" && e.Status == 201 {
			out[e.Reference]++
		}
	}
	return out
}

func countOps(entries []sandbox.Entry, keep func(sandbox.Entry) bool) int {
	return len(sandbox.Filter(entries, keep))
}

// report prints a one-line observation for docs/RELIABILITY.md (go test -v shows them).
func report(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Logf("OBSERVED: "+format, args...)
	if p := os.Getenv("RELIABILITY_REPORT"); p != "" {
		fh, err := os.OpenFile(p, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			fmt.Fprintf(fh, "%s\t%s\n", t.Name(), fmt.Sprintf(format, args...))
			fh.Close()
		}
	}
}

// longSecretRun matches what a secret key or token looks like: a long run of base64
// characters with both upper and lower case letters (digests are lowercase hex).
var longSecretRun = regexp.MustCompile(`[A-Za-z0-9+/=]{40,}`)

var encodedDigest = regexp.MustCompile(`%3[Aa][0-9a-f]{64}`)

// assertNoSecrets fails if the logs contain any key, secret or token the sandbox issued
// that the test can know, or anything shaped like one.
func assertNoSecrets(t testing.TB, f *fx, logs string) {
	t.Helper()
	for _, s := range knownSecrets(t, f) {
		if s != "" && strings.Contains(logs, s) {
			t.Errorf("logs contain a secret value (%.6s…)", s)
		}
	}
	// Every registry token is base64("AWS:"+password); every STS session token the
	// sandbox mints starts with this prefix.
	for _, marker := range []string{"QVdTOi", "IQoJb3JpZ2luX2VjE", "ASIA", "AKIA"} {
		if strings.Contains(logs, marker) {
			t.Errorf("logs contain %q, the start of a credential", marker)
		}
	}
	// A presigned URL's query (storage redirects) carries credentials; no URL query of
	// that kind may reach a log line, whatever its values.
	if i := strings.Index(logs, "X-Amz-"); i >= 0 {
		// Show where, without the values: the line up to the query.
		start := strings.LastIndex(logs[:i], "\n") + 1
		t.Errorf("logs contain a presigned URL query (X-Amz-…): %.300s", logs[start:i])
	}
	// URL-encoded digests (sha256%3A<hex>) in request URLs are not secrets.
	for _, m := range longSecretRun.FindAllString(encodedDigest.ReplaceAllString(logs, ""), -1) {
		if strings.ContainsAny(m, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && strings.ContainsAny(m, "abcdefghijklmnopqrstuvwxyz") {
			t.Errorf("logs contain a secret-shaped string %.8s… (%d chars)", m, len(m))
		}
	}
}

var (
	secretsMu sync.Mutex
	secrets   = map[*fx][]string{}
)

// knownSecrets: every user's access key and secret, plus the registry passwords and
// session credentials the test itself minted (recordSecret).
func knownSecrets(t testing.TB, f *fx) []string {
	var out []string
	for _, acct := range []string{srcAcct, dstAcct} {
		for _, u := range []string{sandbox.AdminUser, sandbox.SourceUser} {
			if k, s, err := f.sb.Credentials(acct, u); err == nil {
				out = append(out, k, s)
			}
		}
	}
	secretsMu.Lock()
	out = append(out, secrets[f]...)
	secretsMu.Unlock()
	return append(out, f.sb.IssuedSecrets()...)
}

func recordSecret(f *fx, s ...string) {
	secretsMu.Lock()
	secrets[f] = append(secrets[f], s...)
	secretsMu.Unlock()
}

func toJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// assertNoIncompleteTags: every destination tag of repo points at content that is all
// there (an index with every child, every image with its config and layers).
func (f *fx) assertNoIncompleteTags(t testing.TB, repo string) {
	t.Helper()
	d := f.dest(t)
	for tag, digest := range f.w.Dest.Tags(t, f.ctx, prefix+repo) {
		desc, err := remote.Get(d.Ref(t, prefix+repo, digest), remote.WithAuth(d.Auth), remote.WithContext(f.ctx))
		if err != nil {
			t.Errorf("destination tag %s → %s: %v", tag, digest, err)
			continue
		}
		if desc.MediaType.IsIndex() {
			idx, err := desc.ImageIndex()
			if err == nil {
				err = validate.Index(idx)
			}
			if err != nil {
				t.Errorf("destination tag %s → index %s is incomplete: %v", tag, digest, err)
			}
			continue
		}
		img, err := desc.Image()
		if err == nil {
			err = validate.Image(img)
		}
		if err != nil {
			t.Errorf("destination tag %s → %s is incomplete: %v", tag, digest, err)
		}
	}
}

// batchFailures returns the message IDs an SQS answer lists in batchItemFailures.
func batchFailures(t testing.TB, out any) map[string]bool {
	t.Helper()
	resp, ok := out.(events.SQSEventResponse)
	if !ok {
		t.Fatalf("Handle answered %T to an SQS batch", out)
	}
	failed := map[string]bool{}
	for _, fi := range resp.BatchItemFailures {
		failed[fi.ItemIdentifier] = true
	}
	return failed
}
