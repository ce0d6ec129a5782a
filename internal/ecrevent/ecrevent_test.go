package ecrevent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
)

const (
	digest = "sha256:db6c890b50102322df879e9e0f16086df2cb32b0e82f74f0eba9c6c9a03bf3e1"
	digB   = "sha256:d55bae183987f6c10f81077ce39cc467b3620a06940c1afce772cf28fc368864"
)

// event builds an ECR Image Action body; detailFields replaces the detail,
// envFields overrides envelope fields (a nil value deletes the key).
func event(t testing.TB, detailFields map[string]any, envFields map[string]any) []byte {
	t.Helper()
	env := map[string]any{
		"version": "0", "id": "13cde686-328b-6117-af20-0e5566167482", "detail-type": "ECR Image Action",
		"source": "aws.ecr", "account": "111111111111", "time": "2026-03-04T15:42:17Z", "region": "us-east-1",
		"resources": []string{},
	}
	d := map[string]any{"result": "SUCCESS", "repository-name": "team-a/app", "image-digest": digest, "action-type": "PUSH", "image-tag": "latest"}
	for k, v := range detailFields {
		if v == nil {
			delete(d, k)
		} else {
			d[k] = v
		}
	}
	env["detail"] = d
	for k, v := range envFields {
		if v == nil {
			delete(env, k)
		} else {
			env[k] = v
		}
	}
	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type nullValue struct{}

func (nullValue) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

func TestParseEvents(t *testing.T) {
	cases := []struct {
		name   string
		body   []byte
		class  Class
		tag    string
		reason string // substring of IgnoredReason
	}{
		{"push tagged", event(t, nil, nil), Push, "latest", ""},
		{"push tag absent", event(t, map[string]any{"image-tag": nil}, nil), Push, "", ""},
		{"push tag null", event(t, map[string]any{"image-tag": nullValue{}}, nil), Push, "", ""},
		{"push tag empty", event(t, map[string]any{"image-tag": ""}, nil), Push, "", ""},
		{"delete", event(t, map[string]any{"action-type": "DELETE"}, nil), Delete, "latest", ""},
		{"delete by tag only (guess)", event(t, map[string]any{"action-type": "DELETE", "image-digest": nil}, nil), Delete, "latest", ""},
		{"failed", event(t, map[string]any{"result": "FAILED"}, nil), Ignored, "", "FAILED"},
		{"failed with junk", event(t, map[string]any{"result": "FAILED", "image-digest": "x"}, nil), Ignored, "", "FAILED"},
		{"storage class", event(t, map[string]any{"action-type": "UPDATE_STORAGE_CLASS", "target-storage-class": "ARCHIVE"}, nil), Ignored, "", "UPDATE_STORAGE_CLASS"},
		{"other action", event(t, map[string]any{"action-type": "REPLICATE"}, nil), Ignored, "", "REPLICATE"},
		{"scan resource change", event(t, nil, map[string]any{"detail-type": "ECR Scan Resource Change"}), Ignored, "", "ECR Scan Resource Change"},
		{"referrer event", event(t, nil, map[string]any{"detail-type": "ECR Referrer Action"}), Ignored, "", "detail-type"},
		{"other source", event(t, nil, map[string]any{"source": "custom.test"}), Ignored, "", "custom.test"},
		{"no time", event(t, nil, map[string]any{"time": nil, "id": nil}), Push, "latest", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := Parse(c.body)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if m.Kind != KindImageAction || m.Class != c.class || m.Image == nil {
				t.Fatalf("got %v %v", m.Kind, m.Class)
			}
			if m.Class != Ignored {
				if m.Image.Tag != c.tag || m.Image.Repository != "team-a/app" || m.Image.Account != "111111111111" {
					t.Errorf("image = %+v", m.Image)
				}
				if err := m.Image.Validate(); err != nil {
					t.Errorf("Validate: %v", err)
				}
			} else if !strings.Contains(m.IgnoredReason, c.reason) {
				t.Errorf("IgnoredReason = %q, want %q", m.IgnoredReason, c.reason)
			}
		})
	}
	m, _ := Parse(event(t, map[string]any{"manifest-media-type": "application/vnd.oci.image.index.v1+json"}, nil))
	want := time.Date(2026, 3, 4, 15, 42, 17, 0, time.UTC)
	if !m.Image.Time.Equal(want) || m.Image.EventID == "" || m.Image.ManifestMediaType != "application/vnd.oci.image.index.v1+json" {
		t.Errorf("normalized fields: %+v", m.Image)
	}
}

func TestParseMalformed(t *testing.T) {
	cases := []struct {
		name string
		body []byte
		want string
	}{
		{"empty", []byte("  "), "body: empty"},
		{"not object", []byte(`[1]`), "body: not a JSON object"},
		{"bad json", []byte(`{"detail-type":`), "body:"},
		{"too big", []byte(`{"x":"` + strings.Repeat("a", MaxBodySize) + `"}`), "256 KiB"},
		{"neither", []byte(`{"repositories":["team-a/*"]}`), "neither an EventBridge event"},
		{"sqs batch", []byte(`{"Records":[]}`), "Records"},
		{"bad digest", event(t, map[string]any{"image-digest": "sha256:zz"}, nil), `detail.image-digest: "sha256:zz" is not a valid digest`},
		{"missing digest", event(t, map[string]any{"image-digest": nil}, nil), "detail.image-digest: required"},
		{"delete nothing", event(t, map[string]any{"action-type": "DELETE", "image-digest": nil, "image-tag": nil}, nil), "detail.image-digest: required"},
		{"bad tag", event(t, map[string]any{"image-tag": "-x"}, nil), `detail.image-tag: "-x"`},
		{"tag number", event(t, map[string]any{"image-tag": 5}, nil), "detail.image-tag: want a JSON string"},
		{"bad repo", event(t, map[string]any{"repository-name": "Team/App"}, nil), `detail.repository-name: "Team/App"`},
		{"missing repo", event(t, map[string]any{"repository-name": nil}, nil), "detail.repository-name: required"},
		{"missing result", event(t, map[string]any{"result": nil}, nil), "detail.result: required"},
		{"missing action", event(t, map[string]any{"action-type": nil}, nil), "detail.action-type: required"},
		{"bad account", event(t, nil, map[string]any{"account": "1111"}), `account: "1111" is not a 12-digit`},
		{"missing account", event(t, nil, map[string]any{"account": nil}), "account: required"},
		{"bad region", event(t, nil, map[string]any{"region": "moon"}), `region: "moon"`},
		{"missing region", event(t, nil, map[string]any{"region": nil}), "region: required"},
		{"bad time", event(t, nil, map[string]any{"time": "yesterday"}), `time: "yesterday"`},
		{"missing detail", event(t, nil, map[string]any{"detail": nil}), "detail: required"},
		{"detail not object", event(t, nil, map[string]any{"detail": "x"}), "detail: want a JSON"},
		{"account number", event(t, nil, map[string]any{"account": 111111111111}), "account: want a JSON string"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.body)
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("err = %v, want ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want it to contain %q", err, c.want)
			}
		})
	}
}

func workItem() WorkItem {
	return WorkItem{
		Action: WorkCopy, Rule: "prod",
		Source:      ImageRef{AccountID: "111111111111", Region: "us-east-1", Repository: "team-a/app", Digest: digest, Tag: "v1"},
		Destination: RepositoryRef{AccountID: "222222222222", Region: "eu-west-1", Repository: "mirror/team-a/app"},
		Reason:      "missing digest", CreatedAt: time.Date(2026, 3, 5, 10, 0, 0, 0, time.UTC),
	}
}

func TestWorkItemRoundTrip(t *testing.T) {
	for _, action := range []string{WorkCopy, WorkDelete} {
		w := workItem()
		w.Action = action
		if action == WorkCopy {
			w.Run = "2026-03-05T09:00:00Z" // found by a reconcile run
		}
		b, err := Marshal(w)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(%s): %v", b, err)
		}
		wantClass := map[string]Class{WorkCopy: Push, WorkDelete: Delete}[action]
		if m.Kind != KindWorkItem || m.Class != wantClass || m.WorkItem.Kind != WorkItemKind || m.WorkItem.Version != 1 {
			t.Fatalf("message = %+v", m)
		}
		got := *m.WorkItem
		w.Kind, w.Version = WorkItemKind, WorkItemVersion
		if !got.CreatedAt.Equal(w.CreatedAt) {
			t.Errorf("createdAt %v != %v", got.CreatedAt, w.CreatedAt)
		}
		got.CreatedAt = w.CreatedAt
		if got != w {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, w)
		}
	}
}

func TestWorkItemErrors(t *testing.T) {
	mutate := func(f func(*WorkItem)) WorkItem { w := workItem(); f(&w); return w }
	cases := []struct {
		w    WorkItem
		want string
	}{
		{mutate(func(w *WorkItem) { w.Action = "move" }), `action: "move"`},
		{mutate(func(w *WorkItem) { w.Rule = "" }), "rule: required"},
		{mutate(func(w *WorkItem) { w.Version = 2 }), "version: 2 is not supported"},
		{mutate(func(w *WorkItem) { w.Kind = "other" }), `kind: "other"`},
		{mutate(func(w *WorkItem) { w.Source.Digest = "sha256:zz" }), `source.digest: "sha256:zz"`},
		{mutate(func(w *WorkItem) { w.Source.Tag = ".x" }), "source.tag:"},
		{mutate(func(w *WorkItem) { w.Source.AccountID = "1" }), "source.accountId:"},
		{mutate(func(w *WorkItem) { w.Source.Region = "x" }), "source.region:"},
		{mutate(func(w *WorkItem) { w.Source.Repository = "A" }), "source.repository:"},
		{mutate(func(w *WorkItem) { w.Destination.AccountID = "" }), "destination.accountId:"},
		{mutate(func(w *WorkItem) { w.Destination.Region = "" }), "destination.region:"},
		{mutate(func(w *WorkItem) { w.Destination.Repository = "a//b" }), "destination.repository:"},
		{mutate(func(w *WorkItem) { w.Reason = strings.Repeat("x", 2000) }), "reason:"},
		{mutate(func(w *WorkItem) { w.CreatedAt = time.Time{} }), "createdAt: required"},
		{mutate(func(w *WorkItem) { w.Run = "yesterday" }), `run: "yesterday"`},
	}
	for _, c := range cases {
		_, err := Marshal(c.w)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Marshal err = %v, want %q", err, c.want)
		}
	}
	good, _ := Marshal(workItem())
	bodies := []struct{ body, want string }{
		{strings.Replace(string(good), `"rule"`, `"rulez"`, 1), `work item: unknown field "rulez"`},
		{strings.Replace(string(good), `"2026-03-05T10:00:00Z"`, `"soon"`, 1), `createdAt: "soon"`},
		{strings.Replace(string(good), `"version":1`, `"version":"1"`, 1), "version: want a JSON int"},
		{string(good) + `{}`, "after top-level value"},
	}
	for _, c := range bodies {
		_, err := Parse([]byte(c.body))
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%s) err = %v, want %q", c.body, err, c.want)
		}
	}
}

// TestSamples parses every sample payload in ../../events.
func TestSamples(t *testing.T) {
	dir := filepath.Join("..", "..", "events")
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	direct := []struct {
		file  string
		class Class
		tag   string
		media string
	}{
		{"push.json", Push, "v1.1.0", "application/vnd.docker.distribution.manifest.v2+json"},
		{"push-untagged.json", Push, "", "application/vnd.oci.image.manifest.v1+json"},
		{"push-index.json", Push, "v1.2.0", "application/vnd.oci.image.index.v1+json"},
		{"delete.json", Delete, "v1.1.0", ""},
	}
	seen := map[string]bool{"sqs-batch.json": true, "backfill.json": true, "reconcile.json": true} // the last two: internal/backfill and internal/reconcile parse them
	for _, c := range direct {
		seen[c.file] = true
		m, err := Parse(read(c.file))
		if err != nil {
			t.Fatalf("%s: %v", c.file, err)
		}
		a := m.Image
		if m.Kind != KindImageAction || m.Class != c.class || a.Tag != c.tag || a.ManifestMediaType != c.media ||
			a.Account != "111111111111" || a.Region != "us-east-1" || a.Repository != "team-a/app" {
			t.Errorf("%s: %v %v %+v", c.file, m.Kind, m.Class, a)
		}
	}

	// The backfill request is the backfill function's input, not a queue
	// message.
	if _, err := Parse(read("backfill.json")); !errors.Is(err, ErrMalformed) {
		t.Errorf("backfill.json: err = %v, want ErrMalformed", err)
	}
	var req struct {
		Repositories, Tags []string
		DryRun             bool
	}
	if err := json.Unmarshal(read("backfill.json"), &req); err != nil || !req.DryRun || req.Repositories[0] != "team-a/*" {
		t.Errorf("backfill.json: %+v %v", req, err)
	}

	var batch events.SQSEvent
	if err := json.Unmarshal(read("sqs-batch.json"), &batch); err != nil {
		t.Fatal(err)
	}
	if len(batch.Records) != 3 {
		t.Fatalf("sqs-batch.json: %d records", len(batch.Records))
	}
	for _, r := range batch.Records {
		if r.MessageId == "" || r.ReceiptHandle == "" || r.EventSourceARN != "arn:aws:sqs:us-east-1:111111111111:ecr-replicator-queue" || r.EventSource != "aws:sqs" {
			t.Errorf("record envelope: %+v", r)
		}
	}
	if m, err := Parse([]byte(batch.Records[0].Body)); err != nil || m.Kind != KindImageAction || m.Class != Push || m.Image.Tag != "v1.2.0" {
		t.Errorf("record 0: %+v %v", m, err)
	}
	if m, err := Parse([]byte(batch.Records[1].Body)); err != nil || m.Kind != KindWorkItem || m.Class != Push ||
		m.WorkItem.Source.Digest != digB || m.WorkItem.Destination.Repository != "mirror/team-a/app" {
		t.Errorf("record 1: %+v %v", m, err)
	}
	if _, err := Parse([]byte(batch.Records[2].Body)); !errors.Is(err, ErrMalformed) {
		t.Errorf("record 2: err = %v, want ErrMalformed", err)
	}

	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !seen[e.Name()] {
			t.Errorf("sample %s is not covered by this test", e.Name())
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add(event(f, nil, nil))
	f.Add(event(f, map[string]any{"image-tag": nil, "action-type": "DELETE"}, nil))
	good, _ := Marshal(workItem())
	f.Add(good)
	rec, _ := MarshalReconcile(reconcileItem())
	f.Add(rec)
	f.Add([]byte(`{"kind":1}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		m, err := Parse(body)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		switch {
		case m.Kind == KindWorkItem:
			if err := m.WorkItem.Validate(); err != nil {
				t.Fatalf("parsed work item invalid: %v", err)
			}
			b, err := Marshal(*m.WorkItem)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(b); err != nil {
				t.Fatalf("re-parse: %v", err)
			}
		case m.Kind == KindReconcile:
			b, err := MarshalReconcile(*m.Reconcile)
			if err != nil {
				t.Fatalf("parsed reconcile item invalid: %v", err)
			}
			if _, err := Parse(b); err != nil {
				t.Fatalf("re-parse: %v", err)
			}
		case m.Class == Ignored:
			if m.IgnoredReason == "" {
				t.Fatal("ignored without a reason")
			}
		default:
			if err := m.Image.Validate(); err != nil {
				t.Fatalf("parsed image action invalid: %v", err)
			}
		}
	})
}

// TestEventRoundTrip: what Event renders, Parse reads back unchanged.
func TestEventRoundTrip(t *testing.T) {
	for _, a := range []ImageAction{
		{EventID: "e1", Account: "111111111111", Region: "us-east-1", Time: time.Date(2026, 11, 27, 1, 2, 3, 0, time.UTC),
			Repository: "team-a/app", Digest: "sha256:" + strings.Repeat("ab", 32), Tag: "v1", ActionType: ActionPush,
			Result: ResultSuccess, ManifestMediaType: "application/vnd.oci.image.index.v1+json"},
		{EventID: "e2", Account: "111111111111", Region: "eu-west-1", Time: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
			Repository: "app", Digest: "sha256:" + strings.Repeat("cd", 32), ActionType: ActionDelete, Result: ResultSuccess},
	} {
		m, err := Parse(a.Event())
		if err != nil {
			t.Fatal(err)
		}
		if *m.Image != a {
			t.Errorf("round trip:\n got %+v\nwant %+v", *m.Image, a)
		}
	}
}

// TestRepositoryNamesECRAllows: ECR's current repository-name pattern allows '__' and runs
// of '-' (API_InitiateLayerUpload, repositoryName); events for such repositories are
// replicated, not rejected as malformed.
func TestRepositoryNamesECRAllows(t *testing.T) {
	for _, repo := range []string{"team--app", "my__app", "team-a/svc---x", "a.b/c__d"} {
		m, err := Parse(event(t, map[string]any{"repository-name": repo}, nil))
		if err != nil {
			t.Fatalf("%s: %v", repo, err)
		}
		if m.Class != Push || m.Image.Repository != repo {
			t.Fatalf("%s: class %v, repository %q", repo, m.Class, m.Image.Repository)
		}
	}
}

func reconcileItem() Reconcile {
	return Reconcile{Run: "2026-12-01T10:00:00Z", Source: SourceRegistry{AccountID: "111111111111", Region: "us-east-1"},
		Repository: "team-a/app", Cursor: "1|sha256:" + strings.Repeat("a", 64) + "|222222222222/us-east-1/mirror/team-a/app|v1",
		Scope: Scope{Repositories: []string{"team-a/*"}}, CreatedAt: time.Date(2026, 12, 1, 10, 0, 3, 0, time.UTC)}
}

func TestReconcileRoundTrip(t *testing.T) {
	scan := reconcileItem()
	scan.Repository, scan.Cursor, scan.Scan = "", "", &Scan{Token: "opaque+/=", Skip: 40, Next: "team-b/web"}
	first := scan
	first.Scan, first.Hops = &Scan{}, 3
	retried := reconcileItem()
	retried.Attempt, retried.Destinations = 2, []SourceRegistry{{AccountID: "222222222222", Region: "eu-west-1"}}
	for _, r := range []Reconcile{reconcileItem(), scan, first, retried} {
		b, err := MarshalReconcile(r)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(b)
		if err != nil {
			t.Fatalf("Parse(%s): %v", b, err)
		}
		if m.Kind != KindReconcile || m.Reconcile == nil {
			t.Fatalf("message = %+v", m)
		}
		r.Kind, r.Version = ReconcileKind, ReconcileVersion
		if !reflect.DeepEqual(*m.Reconcile, r) {
			t.Errorf("round trip:\n got %+v\nwant %+v", *m.Reconcile, r)
		}
	}
}

func TestReconcileErrors(t *testing.T) {
	mutate := func(f func(*Reconcile)) Reconcile { r := reconcileItem(); f(&r); return r }
	for _, c := range []struct {
		r    Reconcile
		want string
	}{
		{mutate(func(r *Reconcile) { r.Run = "now" }), `run: "now"`},
		{mutate(func(r *Reconcile) { r.Source.AccountID = "1" }), "source.accountId:"},
		{mutate(func(r *Reconcile) { r.Source.Region = "x" }), "source.region:"},
		{mutate(func(r *Reconcile) { r.Repository = "" }), "repository: exactly one of repository and scan"},
		{mutate(func(r *Reconcile) { r.Scan = &Scan{} }), "repository: exactly one of repository and scan"},
		{mutate(func(r *Reconcile) { r.Repository = "A" }), "repository:"},
		{mutate(func(r *Reconcile) { r.Cursor = strings.Repeat("x", 1025) }), "cursor: longer than 1024"},
		{mutate(func(r *Reconcile) { r.Repository, r.Scan = "", &Scan{} }), "cursor: only a repository item"},
		{mutate(func(r *Reconcile) { r.Repository, r.Cursor, r.Scan = "", "", &Scan{After: "B"} }), "scan.after:"},
		{mutate(func(r *Reconcile) { r.Repository, r.Cursor, r.Scan = "", "", &Scan{Skip: 3} }), "scan.next: required with skip"},
		{mutate(func(r *Reconcile) { r.Repository, r.Cursor, r.Scan = "", "", &Scan{Skip: 1001, Next: "a/b"} }), "scan.skip:"},
		{mutate(func(r *Reconcile) { r.Repository, r.Cursor, r.Scan = "", "", &Scan{Token: strings.Repeat("t", 4097)} }), "scan.token: longer"},
		{mutate(func(r *Reconcile) { r.Destinations = []SourceRegistry{{AccountID: "2", Region: "us-east-1"}} }), "destinations[0].accountId:"},
		{mutate(func(r *Reconcile) { r.Attempt = MaxAttempts + 1 }), "attempt:"},
		{mutate(func(r *Reconcile) { r.Hops = MaxHops + 1 }), "hops:"},
		{mutate(func(r *Reconcile) { r.Scope.Tags = make([]string, 101) }), "scope: more than 100 globs"},
		{mutate(func(r *Reconcile) { r.CreatedAt = time.Time{} }), "createdAt: required"},
	} {
		_, err := MarshalReconcile(c.r)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("MarshalReconcile err = %v, want %q", err, c.want)
		}
	}
	good, _ := MarshalReconcile(reconcileItem())
	_, err := Parse([]byte(strings.Replace(string(good), `"cursor"`, `"cursr"`, 1)))
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), `unknown field "cursr"`) {
		t.Errorf("unknown field: %v", err)
	}
}

// TestParseImageScan: basic and enhanced scan-complete events are triggers naming an
// image; Inspector's repository ARN must be the envelope's account and region.
func TestParseImageScan(t *testing.T) {
	basic := `{"version":"0","id":"e1","detail-type":"ECR Image Scan","source":"aws.ecr","account":"111111111111","time":"2026-03-04T15:42:17Z","region":"us-east-1",
	  "resources":["arn:aws:ecr:us-east-1:111111111111:repository/team-a/app"],
	  "detail":{"scan-status":"COMPLETE","repository-name":"team-a/app","finding-severity-counts":{"CRITICAL":1},"image-digest":"` + digest + `","image-tags":["v1"]}}`
	inspector := func(repo string) string {
		return `{"version":"0","id":"e2","detail-type":"Inspector2 Scan","source":"aws.inspector2","account":"111111111111","time":"2026-03-04T15:42:17Z","region":"us-east-1",
		  "resources":["` + repo + `"],
		  "detail":{"scan-status":"INITIAL_SCAN_COMPLETE","repository-name":"` + repo + `","finding-severity-counts":{"TOTAL":0},"image-digest":"` + digest + `","image-tags":[]}}`
	}
	for _, c := range []struct {
		name, body string
		enhanced   bool
	}{{"basic", basic, false}, {"enhanced", inspector("arn:aws:ecr:us-east-1:111111111111:repository/team-a/app"), true}} {
		m, err := Parse([]byte(c.body))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		s := m.ImageScan
		if m.Kind != KindImageScan || m.Class != Trigger || s == nil || s.Repository != "team-a/app" || s.Digest != digest ||
			s.Account != "111111111111" || s.Enhanced != c.enhanced || s.Repo().Name != "team-a/app" {
			t.Fatalf("%s: %+v %+v", c.name, m, s)
		}
	}
	// Inspector scans EC2 instances and Lambda functions too: no repository, ignored.
	ec2 := `{"version":"0","id":"e3","detail-type":"Inspector2 Scan","source":"aws.inspector2","account":"111111111111","time":"2026-03-04T15:42:17Z","region":"us-east-1",
	  "resources":["i-087d63509b8c97098"],"detail":{"scan-status":"INITIAL_SCAN_COMPLETE","instance-id":"i-087d63509b8c97098","version":"1.0","finding-severity-counts":{"TOTAL":0}}}`
	if m, err := Parse([]byte(ec2)); err != nil || m.Class != Ignored || !strings.Contains(m.IgnoredReason, "i-087d63509b8c97098") {
		t.Errorf("Inspector scan of an EC2 instance: %+v %v, want ignored", m, err)
	}
	for _, c := range []struct{ name, body, want string }{
		{"basic scan without a repository", strings.Replace(basic, `"repository-name":"team-a/app",`, "", 1), "detail.repository-name: required"},
		{"foreign repository ARN", inspector("arn:aws:ecr:us-east-1:999999999999:repository/team-a/app"), "detail.repository-name"},
		{"no digest", strings.Replace(basic, `"image-digest":"`+digest+`",`, "", 1), "detail.image-digest: required"},
		{"bad digest", strings.Replace(basic, digest, "sha256:xyz", 1), "detail.image-digest"},
	} {
		if _, err := Parse([]byte(c.body)); err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}

// TestWorkItemHold: a re-check's hold round-trips and is bounded.
func TestWorkItemHold(t *testing.T) {
	w := WorkItem{Action: WorkCopy, Rule: "r", Source: ImageRef{AccountID: "111111111111", Region: "us-east-1", Repository: "team-a/app", Digest: digest, Tag: "v1"},
		Destination: RepositoryRef{AccountID: "222222222222", Region: "us-east-1", Repository: "team-a/app"}, CreatedAt: time.Now().UTC().Truncate(time.Second),
		Hold: &Hold{Attempt: 2, Reason: "SignatureMissing", EventID: "e1"}}
	b, err := Marshal(w)
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(b)
	if err != nil || m.WorkItem.Hold == nil || *m.WorkItem.Hold != *w.Hold {
		t.Fatalf("%s: %+v %v", b, m.WorkItem, err)
	}
	w.Hold.Attempt = MaxHoldAttempts + 1
	if _, err := Marshal(w); err == nil || !strings.Contains(err.Error(), "hold.attempt") {
		t.Errorf("attempt past the bound: %v", err)
	}
	w.Hold.Attempt, w.Action = 1, WorkDelete
	if _, err := Marshal(w); err == nil || !strings.Contains(err.Error(), "only a copy is held") {
		t.Errorf("held delete: %v", err)
	}
}
