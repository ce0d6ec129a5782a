package eventhandler_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/eventsource"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/stack"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/lambdatest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
)

// gateWorld is the push path deployed with promotion gates: template.yaml's rules and
// queues (stack), the replicate function's real bootstrap under the RIE, as its deployed
// role, taking the ReplicationQueue and the CopyQueue as its event sources do.
type gateWorld struct {
	f      *fixture
	st     *stack.Stack
	pool   interface{ Functions() []*lambdatest.Function }
	idle   func() error
	key    *signing.Key
	pushed map[string]string // repository → digest
}

// startGated deploys it with rules (%[1]s is the signing key's PEM, %[2]s the
// destination). Scans are the test's: started when an image is pushed, completed when
// the test says.
func startGated(t *testing.T, rules string) *gateWorld {
	t.Helper()
	key := signing.NewKey(t)
	dest := fmt.Sprintf(`{"accountId":%q,"region":%q,"roleArn":%q,"externalId":%q,"repositoryPrefix":"mirror/"}`,
		dstAcct, region, sandbox.RoleARN(dstAcct, sandbox.DestinationRole), extID)
	params := deployedParams()
	params["PromotionGates"] = "true"
	f := newFixture(t, fmt.Sprintf(rules, fmt.Sprintf("%q", key.PublicPEM(t)), dest), sandboxtest.Deployed(t, params))
	st, err := stack.Deploy(f.ctx, f.sb, stack.Options{PromotionGates: true})
	if err != nil {
		t.Fatal(err)
	}
	env := sandboxtest.FunctionEnvFor(t, f.ctx, f.sb, f.env)
	for k, v := range st.FunctionEnv() {
		env[k] = v
	}
	env["RESULT_EVENT_BUS"] = busARN
	pool := lambdatest.Pool(t, "github.com/ecr-replicator/ecr-replicator/functions/replicate", env)
	envs := eventsource.NewEnvironments(func() (eventsource.Handler, error) { return pool.New() })
	es, stop, err := st.Start(f.ctx, stack.Mapping{Invoke: envs.Invoke})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stop() })
	cs, cstop, err := st.StartCopyQueue(f.ctx, stack.Mapping{Invoke: envs.Invoke})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cstop() })
	return &gateWorld{f: f, st: st, pool: pool, key: key, pushed: map[string]string{},
		idle: func() error { return st.WaitIdle(f.ctx, es, cs) }}
}

// push pushes an image to a new scan-on-push repository, as a user does; its scan
// starts.
func (g *gateWorld) push(t *testing.T, repo string) signing.Repo {
	t.Helper()
	g.f.w.Source.CreateRepository(t, g.f.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo),
		ImageScanningConfiguration: &ecrtypes.ImageScanningConfiguration{ScanOnPush: true}})
	img, _ := random.Image(512, 1)
	g.pushed[repo] = g.f.w.Source.Push(t, repo, "v1", img).String()
	g.scan(t, repo, sandbox.ScanResult{Status: "IN_PROGRESS"})
	return signing.NewRepo(t, g.f.w.Source.Host, repo, g.f.w.Source.Auth)
}

// scan sets the image's scan; a completed one sends the scan-complete event.
func (g *gateWorld) scan(t *testing.T, repo string, r sandbox.ScanResult) {
	t.Helper()
	if err := g.f.sb.SetImageScan(srcAcct, region, repo, g.pushed[repo], r); err != nil {
		t.Fatal(err)
	}
}

func (g *gateWorld) sign(t *testing.T, k *signing.Key, r signing.Repo, repo string) {
	t.Helper()
	k.Cosign(t, r, r.Subject(t, g.pushed[repo]), signing.Options{})
}

// lines are the JSON log lines of every execution environment so far.
func (g *gateWorld) lines() []map[string]any {
	var out []map[string]any
	for _, fn := range g.pool.Functions() {
		out = append(out, fn.JSONLines()...)
	}
	return out
}

// await polls the logs until ok says so, for at most d.
func (g *gateWorld) await(t *testing.T, d time.Duration, what string, ok func([]map[string]any) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok(g.lines()) {
		if time.Now().After(deadline) {
			t.Fatalf("after %s, still no %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logged finds log lines with msg and the given fields.
func logged(lines []map[string]any, msg string, fields map[string]string) []map[string]any {
	var out []map[string]any
	for _, l := range lines {
		if l["msg"] != msg {
			continue
		}
		ok := true
		for k, v := range fields {
			if s, _ := l[k].(string); !strings.Contains(s, v) {
				ok = false
			}
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// TestPromotionGatesDeployed proves the gates through the deployed path — ECR's events,
// the template's rules, the queues, the event sources and the function — with the
// signatures and scans a registry holds:
//   - signed by the trusted key, scan pending at the push: held, copied on the
//     scan-complete event, its signature with it;
//   - unsigned at the push, signed 2 s later: held, copied on the signature's push;
//   - signed by another key: blocked; a CRITICAL finding: blocked; an allow-listed one:
//     copied;
//   - never signed: held, re-checked, blocked when its wait ends; signed afterwards:
//     copied then (the signature's push re-decides it);
//   - an index with one unsigned platform, where every platform must be signed: held,
//     blocked naming the platform; the platform signed afterwards: the index it is in is
//     found and copied;
//   - nothing in the dead-letter queue; every block reported (log line, metric by rule
//     and reason, result event).
func TestPromotionGatesDeployed(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bootstrap and the RIE")
	}
	g := startGated(t, `{"rules":[{"name":"promote","repositories":["team-a/*"],
	  "require":{"signatures":{"wait":"6s","signers":[{"name":"release","publicKey":%[1]s}]},
	             "scan":{"severity":"CRITICAL","allow":["CVE-2026-0001"],"wait":"1m"}},
	  "destinations":[%[2]s]},
	  {"name":"platforms","repositories":["team-b/*"],
	  "require":{"signatures":{"wait":"6s","platforms":"all","signers":[{"name":"release","publicKey":%[1]s}]}},
	  "destinations":[%[2]s]}]}`)
	// An index, signed with one of its two platforms.
	g.f.w.Source.EnsureRepository(t, g.f.ctx, "team-b/index")
	idx := twoPlatforms(t)
	g.pushed["team-b/index"] = g.f.w.Source.Push(t, "team-b/index", "v1", idx).String()
	ri := signing.NewRepo(t, g.f.w.Source.Host, "team-b/index", g.f.w.Source.Auth)
	im, _ := idx.IndexManifest()
	g.key.Cosign(t, ri, ri.Subject(t, g.pushed["team-b/index"]), signing.Options{})
	g.key.Cosign(t, ri, ri.Subject(t, im.Manifests[0].Digest.String()), signing.Options{})
	other := signing.NewKey(t)
	repos := map[string]signing.Repo{}
	pushed := time.Now()
	for _, repo := range []string{"team-a/signed", "team-a/late", "team-a/other", "team-a/critical", "team-a/allowed", "team-a/never"} {
		repos[repo] = g.push(t, repo)
	}
	for _, repo := range []string{"team-a/signed", "team-a/critical", "team-a/allowed"} {
		g.sign(t, g.key, repos[repo], repo)
	}
	g.sign(t, other, repos["team-a/other"], "team-a/other")
	held := func(repo, code string) func([]map[string]any) bool {
		return func(ls []map[string]any) bool {
			return len(logged(ls, "image held by a promotion gate", map[string]string{"repository": repo, "error_code": code})) > 0
		}
	}
	// Signed, its scan in progress: held. Unsigned: held.
	g.await(t, 20*time.Second, "hold of team-a/signed", held("team-a/signed", "ScanPending"))
	g.await(t, 20*time.Second, "hold of team-a/late", held("team-a/late", "SignatureMissing"))
	// The scans complete: the clean ones are copied on the event, the critical one blocked.
	findings := map[string][]sandbox.ScanFinding{
		"team-a/critical": {{Name: "CVE-2026-9999", Severity: "CRITICAL"}},
		"team-a/allowed":  {{Name: "CVE-2026-0001", Severity: "CRITICAL"}, {Name: "CVE-2026-0002", Severity: "HIGH"}},
	}
	for repo := range repos {
		g.scan(t, repo, sandbox.ScanResult{Findings: findings[repo]})
	}
	// The late signature, 2 s after the push: copied on its push.
	time.Sleep(2*time.Second - time.Since(pushed))
	g.sign(t, g.key, repos["team-a/late"], "team-a/late")

	// The unsigned one is blocked when its 6 s end, after re-checks; then it is signed.
	g.await(t, 30*time.Second, "block of team-a/never", func(ls []map[string]any) bool {
		return len(logged(ls, "image blocked by a promotion gate (permanent)", map[string]string{"repository": "team-a/never", "error_code": "SignatureTimeout"})) > 0
	})
	if got := g.f.destinationHead(t, "mirror/team-a/never", "v1"); got != "" {
		t.Fatalf("team-a/never copied while unsigned: %s", got)
	}
	g.sign(t, g.key, repos["team-a/never"], "team-a/never")
	// The index's unsigned platform blocked it when its wait ended (its re-checks ran
	// meanwhile); the platform's signature, pushed now, re-decides the index it is in.
	g.await(t, 30*time.Second, "block of team-b/index", func(ls []map[string]any) bool {
		return len(logged(ls, "image blocked by a promotion gate (permanent)", map[string]string{"repository": "team-b/index",
			"error_code": "SignatureTimeout", "reason": "no signature (platform " + im.Manifests[1].Digest.String()})) > 0
	})
	g.key.Cosign(t, ri, ri.Subject(t, im.Manifests[1].Digest.String()), signing.Options{Referrer: true})
	if err := g.idle(); err != nil {
		t.Fatal(err)
	}

	for _, repo := range []string{"team-a/signed", "team-a/late", "team-a/allowed", "team-a/never", "team-b/index"} {
		if got := g.f.destinationHead(t, "mirror/"+repo, "v1"); got != g.pushed[repo] {
			t.Errorf("%s:v1 at the destination: %q, want %s", repo, got, g.pushed[repo])
		}
	}
	sig := "sha256-" + strings.TrimPrefix(g.pushed["team-a/signed"], "sha256:") + ".sig"
	if g.f.destinationHead(t, "mirror/team-a/signed", sig) == "" {
		t.Error("the signature did not travel with team-a/signed")
	}
	for _, repo := range []string{"team-a/other", "team-a/critical"} {
		if got := g.f.destinationHead(t, "mirror/"+repo, "v1"); got != "" {
			t.Errorf("%s copied despite its gate: %s", repo, got)
		}
	}
	ls := g.lines()
	for _, c := range []struct{ msg, repo, code, reason string }{
		{"image held by a promotion gate", "team-a/signed", "ScanPending", "re-checked in"},
		{"image held by a promotion gate", "team-a/late", "SignatureMissing", "no signature"},
		{"image blocked by a promotion gate (permanent)", "team-a/other", "SignatureUntrusted", "does not verify with this key"},
		{"image blocked by a promotion gate (permanent)", "team-a/critical", "ScanFindings", "CVE-2026-9999 CRITICAL"},
		{"image blocked by a promotion gate (permanent)", "team-a/never", "SignatureTimeout", "6s after the push"},
		{"image replicated", "team-a/never", "", ""},
	} {
		if len(logged(ls, c.msg, map[string]string{"repository": c.repo, "error_code": c.code, "reason": c.reason})) == 0 {
			t.Errorf("no %q line for %s with %s %q", c.msg, c.repo, c.code, c.reason)
		}
	}
	// Copied by a trigger (the scan-complete event, the signature's push), not by the
	// held push's own re-checks, which carry the push's event id.
	for _, repo := range []string{"team-a/signed", "team-a/late", "team-a/never", "team-b/index"} {
		holds := logged(ls, "image held by a promotion gate", map[string]string{"repository": repo})
		copies := logged(ls, "image replicated", map[string]string{"repository": repo, "outcome": "copied"})
		if len(holds) == 0 || len(copies) == 0 || copies[0]["event_id"] == holds[0]["event_id"] {
			t.Errorf("%s: not copied by a trigger (held %d times, copies %v)", repo, len(holds), copies)
		}
	}
	if n := len(logged(ls, "image blocked by a promotion gate (permanent)", map[string]string{"repository": "team-a/allowed"})); n > 0 {
		t.Errorf("team-a/allowed blocked %d times", n)
	}
	var emf, events strings.Builder
	for _, l := range ls {
		if _, ok := l["_aws"]; ok {
			emf.WriteString(l["_raw"].(string))
		}
	}
	for _, e := range g.f.sb.PutEvents() {
		events.Write(e.Detail)
	}
	for _, want := range []string{`"GateBlocked":1`, `"Reason":"ScanFindings"`, `"Rule":"promote"`, `"GateHeld":1`} {
		if !strings.Contains(emf.String(), want) {
			t.Errorf("EMF lacks %s:\n%s", want, emf.String())
		}
	}
	for _, want := range []string{`"outcome":"blocked","reason":"1 finding(s) at or above CRITICAL: CVE-2026-9999 CRITICAL"`, `"result":"PENDING"`} {
		if !strings.Contains(events.String(), want) {
			t.Errorf("result events lack %s:\n%s", want, events.String())
		}
	}
	if n, err := g.st.DeadLetters(g.f.ctx); err != nil || n != 0 {
		t.Errorf("dead letters: %d %v", n, err)
	}
	for _, e := range sandboxtest.Denials(g.f.sb, 0) {
		t.Errorf("denied under the deployed policies: %+v", e)
	}
}

// twoPlatforms is an index of two platform images.
func twoPlatforms(t *testing.T) v1.ImageIndex {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	return idx
}
