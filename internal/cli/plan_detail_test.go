package cli

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// sourceSizes is what the source's DescribeImages says of each image: digest →
// imageSizeInBytes.
func sourceSizes(t *testing.T, w *sandboxtest.World, repo string) map[string]int64 {
	t.Helper()
	out, err := ecr.NewFromConfig(w.Source.Config).DescribeImages(w.Ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String(repo)})
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, d := range out.ImageDetails {
		sizes[aws.ToString(d.ImageDigest)] = aws.ToInt64(d.ImageSizeInBytes)
	}
	return sizes
}

// TestCLIPlanDetailAndBytes: plan answers "what, and how big": with --detail a line per
// copy (which tag, which digest, its size, why); the bytes to upload from the listing's
// sizes (imageSizeInBytes; an index counts its platforms, listed as their own images,
// once); and an estimate from both bytes and manifest writes. JSON always has the items.
func TestCLIPlanDetailAndBytes(t *testing.T) {
	w := sandboxtest.Start(t)
	w.Source.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team-a/api")})
	digests := map[string]string{
		"v1":    w.Source.Push(t, "team-a/api", "v1", fixedImage(t, "api-v1")).String(),
		"v2":    w.Source.Push(t, "team-a/api", "v2", fixedImage(t, "api-v2")).String(),
		"multi": w.Source.Push(t, "team-a/api", "multi", fixedIndex(t, "api-multi", "amd64", "arm64")).String(),
	}
	// v1 is in sync already, in the replicator's mirror (owned: sync writes only there).
	w.Dest.CreateRepository(t, w.Ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("mirror/team-a/api"), Tags: sandboxtest.Owned()})
	w.Dest.Push(t, "mirror/team-a/api", "v1", fixedImage(t, "api-v1"))
	sizes := sourceSizes(t, w, "team-a/api")
	if len(sizes) != 5 {
		t.Fatalf("source images: %v", sizes)
	}
	rules := rulesFile(t, destination(w, "mirror/", w.ExternalID))

	// Without --detail: the table has the bytes, the summary the estimate; no detail.
	r := runCLI(t, w.Ctx, nil, "plan", "--rules", rules)
	var want int64 // to upload: v2 and the two platforms; the index itself counts 0 (its platforms are copies of their own)
	for d, s := range sizes {
		if d != digests["v1"] && d != digests["multi"] {
			want += s
		}
	}
	table := fmt.Sprintf("REPOSITORY  DESTINATION                               IN SYNC  TO COPY  TO UPLOAD\n"+
		"team-a/api  222222222222/us-east-1/mirror/team-a/api        1        4  %9s\n", humanBytes(want))
	summary := "1 repository, 5 images; 5 copies " + counted + ": 1 in sync, 4 to copy\n" +
		"to copy: " + humanBytes(want) + " of layers and 4 manifest writes: under a second (" + humanBytes(want) + " at an assumed 100 MiB/s: under a second; 4 writes at ECR's default 10 PutImage/s: under a second)\n"
	if r.code != ExitOK || r.stdout != table+summary || r.stderr != "" {
		t.Errorf("plan:\n%s\nwant stdout\n%s", r, table+summary)
	}

	// --detail: one line per copy, after the table.
	r = runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "--detail")
	if r.code != ExitOK || !strings.HasPrefix(r.stdout, table+"\n") || !strings.HasSuffix(r.stdout, summary) {
		t.Fatalf("plan --detail:\n%s", r)
	}
	detail := lines(strings.TrimSuffix(strings.TrimPrefix(r.stdout, table+"\n"), summary))
	short := func(d string) string { return d[:19] }
	var platforms []string
	for d := range sizes {
		if d != digests["v1"] && d != digests["v2"] && d != digests["multi"] {
			platforms = append(platforms, d)
		}
	}
	rows := []*regexp.Regexp{
		regexp.MustCompile(`^SOURCE +SIZE +DESTINATION +WHY$`),
		row("team-a/api:multi@"+short(digests["multi"]), 0, "digest missing"),
		row("team-a/api:v2@"+short(digests["v2"]), sizes[digests["v2"]], "digest missing"),
	}
	for _, p := range platforms {
		rows = append(rows, row("team-a/api@"+short(p), sizes[p], "digest missing"))
	}
	if len(detail) != len(rows) {
		t.Fatalf("detail has %d lines, want %d:\n%s", len(detail), len(rows), strings.Join(detail, "\n"))
	}
	for i, re := range rows[:3] {
		if !re.MatchString(detail[i]) {
			t.Errorf("detail line %d %q, want %s", i, detail[i], re)
		}
	}
	for _, l := range detail[3:] { // the two platforms, in digest order
		if !rows[3].MatchString(l) && !rows[4].MatchString(l) {
			t.Errorf("detail line %q is not a platform's", l)
		}
	}

	// JSON: the items always, with their sizes; the totals and the estimate.
	r = runCLI(t, w.Ctx, nil, "plan", "--rules", rules, "-o", "json")
	var doc struct {
		Totals struct{ ToCopy, InSync int }
		Items  []struct {
			Source, Destination, Tag, Digest, State, Reason string
			SizeBytes                                       *int64
		}
		Estimate struct {
			BytesToUpload, ManifestWrites       int64
			Seconds, BytesSeconds, WriteSeconds float64
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != ExitOK {
		t.Fatalf("plan -o json: %v\n%s", err, r)
	}
	var sum int64
	for _, it := range doc.Items {
		if it.SizeBytes == nil || it.State != "to-copy" || it.Source != srcECR+"/team-a/api" || it.Destination != dstECR+"/mirror/team-a/api" {
			t.Errorf("item %+v", it)
			continue
		}
		sum += *it.SizeBytes
	}
	if len(doc.Items) != 4 || sum != want || doc.Estimate.BytesToUpload != want || doc.Estimate.ManifestWrites != 4 ||
		doc.Estimate.WriteSeconds != 0.4 || doc.Estimate.BytesSeconds != math.Round(float64(want)/(100<<20)*1000)/1000 || doc.Estimate.Seconds != 0.4 || doc.Totals.ToCopy != 4 || doc.Totals.InSync != 1 {
		t.Errorf("JSON plan: %d items, %d bytes (want %d), %+v", len(doc.Items), sum, want, doc)
	}
}

func row(source string, size int64, why string) *regexp.Regexp {
	return regexp.MustCompile(`^` + regexp.QuoteMeta(source) + ` +` + regexp.QuoteMeta(humanBytes(size)) + ` +` +
		regexp.QuoteMeta("222222222222/us-east-1/mirror/team-a/api") + ` +` + regexp.QuoteMeta(why) + `$`)
}
