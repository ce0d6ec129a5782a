package sandbox_test

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestImageScans: a scan's states answered by DescribeImageScanFindings (paginated) and
// DescribeImages, the scan-complete events of basic (ECR Image Scan) and enhanced
// (Inspector2 Scan) scanning, and the scan policy of a scan-on-push repository.
func TestImageScans(t *testing.T) {
	e, _ := startWithClock(t)
	cfg := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	api := ecr.NewFromConfig(cfg)
	createRepo(t, e.ctx, cfg, "team-a/app", ecrtypes.ImageTagMutabilityMutable)
	host, auth := registryAuth(t, e.ctx, cfg)
	p := pusher{e: e, host: host, auth: auth, repo: "team-a/app"}
	img, _ := random.Image(512, 1)
	p.write(t, "v1", img)
	digest := digestOf(t, img)
	id := &ecrtypes.ImageIdentifier{ImageDigest: aws.String(digest)}

	_, err := api.DescribeImageScanFindings(e.ctx, &ecr.DescribeImageScanFindingsInput{RepositoryName: aws.String("team-a/app"), ImageId: id})
	var nf *ecrtypes.ScanNotFoundException
	if !errors.As(err, &nf) {
		t.Fatalf("no scan yet: %v, want ScanNotFoundException", err)
	}

	if err := e.sb.SetImageScan(sandbox.SourceAccount, sandbox.DefaultRegion, "team-a/app", digest, sandbox.ScanResult{Status: "IN_PROGRESS"}); err != nil {
		t.Fatal(err)
	}
	before := len(e.sb.ECREvents())
	out, err := api.DescribeImageScanFindings(e.ctx, &ecr.DescribeImageScanFindingsInput{RepositoryName: aws.String("team-a/app"), ImageId: id})
	if err != nil || out.ImageScanStatus.Status != ecrtypes.ScanStatusInProgress || out.ImageScanFindings != nil {
		t.Fatalf("in progress: %+v %v", out, err)
	}
	findings := []sandbox.ScanFinding{{Name: "CVE-1", Severity: "CRITICAL"}, {Name: "CVE-2", Severity: "LOW"}, {Name: "CVE-3", Severity: "LOW"}}
	if err := e.sb.SetImageScan(sandbox.SourceAccount, sandbox.DefaultRegion, "team-a/app", digest, sandbox.ScanResult{Findings: findings}); err != nil {
		t.Fatal(err)
	}
	var got []string
	in := &ecr.DescribeImageScanFindingsInput{RepositoryName: aws.String("team-a/app"), ImageId: id, MaxResults: aws.Int32(2)}
	for {
		out, err = api.DescribeImageScanFindings(e.ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		if out.ImageScanStatus.Status != ecrtypes.ScanStatusComplete || out.ImageScanFindings.FindingSeverityCounts["LOW"] != 2 {
			t.Fatalf("complete: %+v", out.ImageScanFindings)
		}
		for _, f := range out.ImageScanFindings.Findings {
			got = append(got, aws.ToString(f.Name)+"/"+string(f.Severity))
		}
		if out.NextToken == nil {
			break
		}
		in.NextToken = out.NextToken
	}
	if len(got) != 3 || got[0] != "CVE-1/CRITICAL" {
		t.Fatalf("findings over pages: %v", got)
	}
	d, err := api.DescribeImages(e.ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team-a/app"), ImageIds: []ecrtypes.ImageIdentifier{*id}})
	if err != nil || d.ImageDetails[0].ImageScanStatus.Status != ecrtypes.ScanStatusComplete ||
		d.ImageDetails[0].ImageScanFindingsSummary.FindingSeverityCounts["CRITICAL"] != 1 {
		t.Fatalf("DescribeImages: %+v %v", d, err)
	}
	evs := eventsSince(e.sb, before)
	if len(evs) != 1 || evs[0].Source != "aws.ecr" || evs[0].DetailType != "ECR Image Scan" ||
		len(evs[0].Resources) != 1 || evs[0].Resources[0] != "arn:aws:ecr:"+sandbox.DefaultRegion+":"+sandbox.SourceAccount+":repository/team-a/app" {
		t.Fatalf("scan events %+v", evs)
	}
	var detail struct {
		Status string         `json:"scan-status"`
		Repo   string         `json:"repository-name"`
		Digest string         `json:"image-digest"`
		Tags   []string       `json:"image-tags"`
		Counts map[string]int `json:"finding-severity-counts"`
	}
	if err := json.Unmarshal(evs[0].Detail, &detail); err != nil || detail.Status != "COMPLETE" || detail.Repo != "team-a/app" ||
		detail.Digest != digest || len(detail.Tags) != 1 || detail.Tags[0] != "v1" || detail.Counts["CRITICAL"] != 1 || detail.Counts["HIGH"] != 0 {
		t.Fatalf("detail %s: %v", evs[0].Detail, err)
	}

	// Enhanced scanning: Inspector scans every push and sends its own event.
	err = e.sb.SetScanPolicy(sandbox.SourceAccount, sandbox.DefaultRegion, &sandbox.ScanPolicy{Enhanced: true, Delay: 50 * time.Millisecond,
		Findings: func(string, string) []sandbox.ScanFinding {
			return []sandbox.ScanFinding{{Name: "CVE-7", Severity: "HIGH"}}
		}})
	if err != nil {
		t.Fatal(err)
	}
	before = len(e.sb.ECREvents())
	img2, _ := random.Image(512, 1)
	p.write(t, "v2", img2)
	deadline := time.Now().Add(5 * time.Second)
	for len(eventsSince(e.sb, before)) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	evs = eventsSince(e.sb, before)
	if len(evs) != 2 || evs[1].Source != "aws.inspector2" || evs[1].DetailType != "Inspector2 Scan" {
		t.Fatalf("events after an enhanced push: %+v", evs)
	}
	out, err = api.DescribeImageScanFindings(e.ctx, &ecr.DescribeImageScanFindingsInput{RepositoryName: aws.String("team-a/app"),
		ImageId: &ecrtypes.ImageIdentifier{ImageTag: aws.String("v2")}})
	if err != nil || out.ImageScanStatus.Status != ecrtypes.ScanStatusActive || len(out.ImageScanFindings.EnhancedFindings) != 1 ||
		aws.ToString(out.ImageScanFindings.EnhancedFindings[0].PackageVulnerabilityDetails.VulnerabilityId) != "CVE-7" {
		t.Fatalf("enhanced: %+v %v", out, err)
	}
}
