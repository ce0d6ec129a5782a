package reliability_test

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/copyengine"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// matrixTags is how many tags of one index a cell's batch carries: enough that the
// engine lists the repositories' tags (after 12 single-tag questions), so the tag
// listing step is exercised too.
const matrixTags = 13

// matrixSteps are the registry steps the engine takes, with the account they happen in.
var matrixSteps = []struct {
	step    sandbox.Step
	account string
}{
	{sandbox.StepPing, srcAcct},
	{sandbox.StepManifestGET, srcAcct},
	{sandbox.StepManifestHEAD, dstAcct},
	{sandbox.StepManifestPUT, dstAcct},
	{sandbox.StepBlobHEAD, dstAcct},
	{sandbox.StepBlobGET, srcAcct},
	{sandbox.StepStorageGET, srcAcct},
	{sandbox.StepUploadPOST, dstAcct},
	{sandbox.StepUploadPUT, dstAcct},
	{sandbox.StepTagsList, dstAcct},
	{sandbox.StepReferrers, srcAcct},
}

var matrixKinds = []sandbox.FaultKind{
	sandbox.Fault500, sandbox.Fault502, sandbox.Fault503, sandbox.Fault504, sandbox.Fault429,
	sandbox.FaultResetBeforeHeaders, sandbox.FaultResetMidBody, sandbox.FaultSlow,
}

// bodyless steps cannot have a body cut.
var bodyless = map[sandbox.Step]bool{
	sandbox.StepPing: true, sandbox.StepManifestHEAD: true, sandbox.StepBlobHEAD: true,
	sandbox.StepBlobGET: true, sandbox.StepUploadPOST: true,
}

// matrixEngine: the engine's production retry model, with short waits so the matrix
// fits in make test; the request timeout is below the sandbox's slow answers.
func matrixEngine() []copyengine.Option {
	return []copyengine.Option{
		copyengine.WithRetry(retry.Policy{Attempts: 4, Initial: 2 * time.Millisecond, Max: 20 * time.Millisecond}),
		copyengine.WithRequestTimeout(300 * time.Millisecond),
		// ECR's PutImage pacing (10/s) is shared by every cell: the sandbox does not throttle.
		copyengine.WithManifestRate(1000, 1000),
	}
}

// cellResult is one row of the matrix.
type cellResult struct {
	step, kind, form string
	outcome          string
	invocations      int
	fired            int
	requests         int
}

// TestFaultMatrix faults every registry step the engine takes, with every kind of
// fault real services answer, in two forms:
//
//   - transient (the fault answers 2 requests, then stops): the batch must end
//     replicated — within the invocation or after redeliveries of what it listed in
//     batchItemFailures — with every digest verified;
//   - persistent (the fault answers every request until cleared): the first invocation
//     must list the message in batchItemFailures (never acknowledge it) unless the step
//     is one the engine can do without (the tag listing, an optimisation); no
//     destination tag may point at incomplete content; once the fault is cleared, the
//     redelivery replicates.
//
// FAULT_MATRIX_OUT=path writes the matrix as a Markdown table (docs/FAULT_MATRIX.md).
func TestFaultMatrix(t *testing.T) {
	f := newFx(t, 4200, withEngine(matrixEngine()...))
	var (
		mu   sync.Mutex
		rows []cellResult
	)
	for _, st := range matrixSteps {
		for _, kind := range matrixKinds {
			if kind == sandbox.FaultResetMidBody && bodyless[st.step] {
				continue
			}
			for _, form := range []string{"transient", "persistent"} {
				name := fmt.Sprintf("%s/%s/%s", st.step, kind, form)
				t.Run(name, func(t *testing.T) {
					if st.step != sandbox.StepPing {
						t.Parallel() // a ping names no repository: its faults cannot be told apart
					}
					r := runCell(t, f, st.step, st.account, kind, form)
					mu.Lock()
					rows = append(rows, r)
					mu.Unlock()
				})
			}
		}
	}
	t.Run("permanent", func(t *testing.T) {
		for _, r := range permanentCells(t) {
			mu.Lock()
			rows = append(rows, r)
			mu.Unlock()
		}
	})
	t.Cleanup(func() { summarizeMatrix(t, rows) })
}

// permanentCells: failures no retry can fix are acknowledged at once with their code —
// one invocation, no batchItemFailures, a bounded number of requests.
func permanentCells(t *testing.T) []cellResult {
	var out []cellResult
	cell := func(what, code string, f *fx, body string, wantCode string) {
		t.Helper()
		mark := f.sb.AccessLogMark()
		recs := f.records(body)
		out1, err := f.h.Handle(f.ctx, sandboxtest.SQSBatch(1, recs...))
		if err != nil {
			t.Fatal(err)
		}
		if failed := batchFailures(t, out1); len(failed) > 0 {
			t.Errorf("%s: a permanent failure was listed for redelivery", what)
		}
		sum, err := f.direct(t, body)
		if err != nil {
			t.Errorf("%s: the direct invocation answered an error (Lambda would retry): %v", what, err)
		}
		got := ""
		if len(sum.Results) > 0 {
			got = sum.Results[0].Code
		} else if len(sum.Malformed) > 0 {
			got = "malformed"
		}
		if got != wantCode || sum.Retryable != 0 {
			t.Errorf("%s: code %q retryable %d, want %q permanent (%s)", what, got, sum.Retryable, wantCode, toJSON(sum))
		}
		out = append(out, cellResult{step: what, kind: code, form: "permanent", outcome: "acknowledged, " + got, invocations: 2,
			requests: countOps(f.sb.AccessLogSince(mark), func(e sandbox.Entry) bool { return e.Service == "registry" || e.Service == "s3" })})
	}
	f := newFx(t, 4300, withEngine(matrixEngine()...))
	gone := f.push(t, "team-a/gone", "", f.image(t, 1024, 1))
	f.deleteSource(t, "team-a/gone", ecrtypes.ImageIdentifier{ImageDigest: aws.String(gone)})
	cell("source image deleted before replication", "MANIFEST_UNKNOWN", f, sandboxtest.ImageEvent("gone", "PUSH", "team-a/gone", gone, ""), "MANIFEST_UNKNOWN")

	d1 := f.push(t, "team-a/frozen", "v1", f.image(t, 1024, 1))
	f.w.Dest.CreateRepository(t, f.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(prefix + "team-a/frozen"), ImageTagMutability: ecrtypes.ImageTagMutabilityImmutable, Tags: sandboxtest.Owned()})
	f.w.Dest.Push(t, prefix+"team-a/frozen", "v1", f.image(t, 1024, 1))
	cell("IMMUTABLE destination tag on another digest", "TAG_INVALID", f, sandboxtest.ImageEvent("frozen", "PUSH", "team-a/frozen", d1, "v1"), "TAG_INVALID")

	cell("invalid digest in the event", "malformed", f, sandboxtest.ImageEvent("bad", "PUSH", "team-a/frozen", "sha256:nothex", "v1"), "malformed")

	denied := newFx(t, 4301, withEngine(matrixEngine()...), withRules(func(string) string { return rulesDoc("not-the-external-id", false) }))
	d2 := denied.push(t, "team-a/denied", "v1", denied.image(t, 1024, 1))
	cell("destination role denied (wrong external ID)", "AccessDenied", denied, sandboxtest.ImageEvent("denied", "PUSH", "team-a/denied", d2, "v1"), "AccessDenied")
	return out
}

func summarizeMatrix(t *testing.T, rows []cellResult) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		return stepIndex(a.step)*100+kindIndex(a.kind)*2+formIndex(a.form) < stepIndex(b.step)*100+kindIndex(b.kind)*2+formIndex(b.form)
	})
	if out := os.Getenv("FAULT_MATRIX_OUT"); out != "" && !t.Failed() {
		writeMatrix(t, out, rows)
	}
	forms, fired, invocations, requests := map[string]int{}, 0, 0, 0
	for _, r := range rows {
		fired += r.fired
		forms[r.form]++
		invocations += r.invocations
		requests += r.requests
	}
	report(t, "fault matrix: %d cells (%d transient, %d persistent, %d permanent), %d faults answered, %d invocations, %d registry and storage requests",
		len(rows), forms["transient"], forms["persistent"], forms["permanent"], fired, invocations, requests)
}

func stepIndex(s string) int {
	for i, st := range matrixSteps {
		if string(st.step) == s {
			return i
		}
	}
	return len(matrixSteps) // permanent rows last, in their order (sort.SliceStable)
}

func kindIndex(k string) int {
	for i, kind := range matrixKinds {
		if string(kind) == k {
			return i
		}
	}
	return len(matrixKinds)
}

func formIndex(f string) int {
	if f == "transient" {
		return 0
	}
	return 1
}

// cellRepo names a cell's source repository: lowercase, one per cell.
func cellRepo(step sandbox.Step, kind sandbox.FaultKind, form string) string {
	return "team-a/fm-" + strings.NewReplacer("reset-before-headers", "rbh", "reset-mid-body", "rmb").Replace(string(step)+"-"+string(kind)+"-"+form[:1])
}

func runCell(t *testing.T, f *fx, step sandbox.Step, account string, kind sandbox.FaultKind, form string) cellResult {
	repo := cellRepo(step, kind, form)
	tags := 2
	if step == sandbox.StepTagsList {
		tags = matrixTags // the destination's tags are listed after 12 single-tag questions
	}
	index := pushMatrixImage(t, f, repo, tags)
	res := cellResult{step: string(step), kind: string(kind), form: form}

	faultRepo := repo
	if account == dstAcct {
		faultRepo = prefix + repo
	}
	if step == sandbox.StepPing {
		faultRepo = "" // a ping names no repository
	}
	count := 2
	if form == "persistent" {
		count = -1
	}
	mark := f.sb.AccessLogMark()
	fault, err := f.sb.ArmRegistryFault(sandbox.RegistryFault{Account: account, Repository: faultRepo, Step: step, Fault: kind, Count: count,
		RetryAfter: time.Second, Delay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer fault.Disarm()

	var bodies []string
	for i := range tags {
		bodies = append(bodies, sandboxtest.ImageEvent(fmt.Sprintf("%s-%d", repo, i), "PUSH", repo, index, fmt.Sprintf("t%d", i)))
	}
	recs := f.records(bodies...)
	switch form {
	case "transient":
		st := f.deliver(t, recs, nil)
		res.invocations = st.invocations
		res.outcome = "replicated"
		if st.invocations > 1 {
			res.outcome = fmt.Sprintf("replicated after %d redelivery(ies)", st.invocations-1)
		}
	case "persistent":
		out, err := f.h.Handle(f.ctx, sandboxtest.SQSBatch(1, recs...))
		if err != nil {
			t.Fatal(err)
		}
		failed := batchFailures(t, out)
		res.invocations = 1
		f.assertNoIncompleteTags(t, repo)
		switch {
		case len(failed) == len(recs):
			res.outcome = "all in batchItemFailures"
		case len(failed) > 0:
			// Some tags finished before the fault reached them: still never acknowledged
			// unless done.
			res.outcome = fmt.Sprintf("%d of %d in batchItemFailures, the rest replicated", len(failed), len(recs))
		case step == sandbox.StepTagsList:
			res.outcome = "replicated without the listing (tags asked one by one)"
		default:
			t.Errorf("persistent %s fault at %s: every message acknowledged", kind, step)
			res.outcome = "ACKNOWLEDGED"
		}
		fault.Disarm()
		var pending []record
		for _, r := range recs {
			if failed[r.ID] {
				pending = append(pending, r)
			}
		}
		if len(pending) > 0 {
			st := f.deliver(t, pending, nil)
			res.invocations += st.invocations
		}
	}
	res.fired = fault.Answered()
	if res.fired == 0 {
		t.Errorf("the %s fault at %s never fired: the cell proves nothing", kind, step)
	}
	res.requests = countOps(f.sb.AccessLogSince(mark), func(e sandbox.Entry) bool {
		return (e.Service == "registry" || e.Service == "s3") && (strings.HasSuffix(e.Repository, repo) || (e.Repository == "" && step == sandbox.StepPing))
	})
	// Everything converged: tags equal, every image complete.
	src := f.w.Source.Tags(t, f.ctx, repo)
	dst := f.w.Dest.Tags(t, f.ctx, prefix+repo)
	if fmt.Sprint(src) != fmt.Sprint(dst) {
		t.Errorf("destination tags %v, source tags %v", dst, src)
	}
	f.assertNoIncompleteTags(t, repo)
	if v := f.sb.StorageViolations(); len(v) > 0 {
		t.Errorf("requests to storage carried credentials: %v", v)
	}
	if n := countOps(f.sb.AccessLogSince(mark), func(e sandbox.Entry) bool {
		return e.Operation == "PATCH upload" && strings.HasSuffix(e.Repository, repo)
	}); n > 0 {
		t.Errorf("%d chunked upload requests: the engine uploads monolithically", n)
	}
	return res
}

// pushMatrixImage pushes a cell's image: a 2-platform index with an OCI 1.1 referrer
// (so the referrers step is taken), tagged t0…t12.
func pushMatrixImage(t *testing.T, f *fx, repo string, tags int) string {
	t.Helper()
	_, err := ecr.NewFromConfig(f.w.Source.Config).CreateRepository(f.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)})
	if err != nil && !strings.Contains(err.Error(), "RepositoryAlreadyExists") {
		t.Fatal(err)
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for range 2 {
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: f.image(t, 1024, 1)})
	}
	d := f.w.Source.Push(t, repo, "t0", idx)
	desc, err := partial.Descriptor(idx)
	if err != nil {
		t.Fatal(err)
	}
	sig := mutate.Subject(mutate.MediaType(f.image(t, 256, 1), types.OCIManifestSchema1), *desc).(v1.Image)
	sd, err := sig.Digest()
	if err != nil {
		t.Fatal(err)
	}
	f.w.Source.Push(t, repo, sd.String(), sig)
	for i := 1; i < tags; i++ {
		f.w.Source.Push(t, repo, fmt.Sprintf("t%d", i), idx)
	}
	return d.String()
}

func writeMatrix(t *testing.T, path string, rows []cellResult) {
	var b strings.Builder
	fmt.Fprintf(&b, "# Fault matrix\n\nGenerated by `make fault-matrix` (`TestFaultMatrix` in `internal/tooling/reliability`) on %s.\n\n", time.Now().UTC().Format("2006-01-02"))
	b.WriteString("Each cell: a batch of push events for 2 tags (13 at `tags-list`, so that the destination's tags are listed) of one 2-platform index with an OCI referrer, delivered to the replicate handler while one registry step of the source or destination answers with the fault. *Transient*: the fault answers 2 requests, then stops. *Persistent*: it answers every request until cleared, then the messages listed in `batchItemFailures` are redelivered. *Invocations*: handler invocations in all; *faults*: requests the fault answered; *requests*: registry and storage requests of the cell.\n\n")
	b.WriteString("*Permanent* rows: failures no retry can fix, delivered once in a batch and once directly: acknowledged with their code, never listed for redelivery.\n\n")
	b.WriteString("| step | fault | form | outcome | invocations | faults | requests |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %d | %d |\n", r.step, r.kind, r.form, r.outcome, r.invocations, r.fired, r.requests)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Error(err)
	}
}
