package gate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// scanState is one image's scan, as DescribeImageScanFindings answers it.
type scanState struct {
	missing     bool   // ScanNotFoundException: no scan was started (yet)
	status      string // imageScanStatus.status
	description string
	findings    []finding
}

// finding is one vulnerability finding: its ID (a CVE ID) and severity.
type finding struct{ id, severity string }

// maxFindingPages bounds the findings read of one image (1,000 per page).
const maxFindingPages = 20

// scan reads an image's scan status and findings, basic or enhanced, every page
// (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeImageScanFindings.html).
func scan(ctx context.Context, api *ecr.Client, img Image, digest string) (scanState, error) {
	var st scanState
	in := &ecr.DescribeImageScanFindingsInput{
		RegistryId: aws.String(img.Repo.AccountID), RepositoryName: aws.String(img.Repo.Name),
		ImageId: &ecrtypes.ImageIdentifier{ImageDigest: aws.String(digest)}, MaxResults: aws.Int32(1000),
	}
	for page := 0; page < maxFindingPages; page++ {
		out, err := api.DescribeImageScanFindings(ctx, in)
		if err != nil {
			var nf *ecrtypes.ScanNotFoundException
			if errors.As(err, &nf) {
				return scanState{missing: true}, nil
			}
			return st, ecraccess.WrapAWS("ecr:DescribeImageScanFindings", err)
		}
		if s := out.ImageScanStatus; s != nil {
			st.status, st.description = string(s.Status), aws.ToString(s.Description)
		}
		if f := out.ImageScanFindings; f != nil {
			for _, x := range f.Findings {
				st.findings = append(st.findings, finding{id: aws.ToString(x.Name), severity: string(x.Severity)})
			}
			for _, x := range f.EnhancedFindings {
				if aws.ToString(x.Status) == "SUPPRESSED" {
					// Suppressed by a suppression rule of the account's Amazon Inspector: the
					// account decided it does not apply (ECR returns Inspector's finding status,
					// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_EnhancedImageScanFinding.html;
					// ACTIVE, SUPPRESSED or CLOSED: https://docs.aws.amazon.com/inspector/v2/APIReference/API_Finding.html).
					// CLOSED ones still count (guess: kept, as any finding ECR lists).
					continue
				}
				id := aws.ToString(x.Title)
				if p := x.PackageVulnerabilityDetails; p != nil && aws.ToString(p.VulnerabilityId) != "" {
					id = aws.ToString(p.VulnerabilityId)
				}
				st.findings = append(st.findings, finding{id: id, severity: aws.ToString(x.Severity)})
			}
		}
		if out.NextToken == nil {
			return st, nil
		}
		in.NextToken = out.NextToken
	}
	return st, fmt.Errorf("ecr:DescribeImageScanFindings %s: more than %d pages of findings", digest, maxFindingPages)
}

// decideScan weighs the scans of the image (or of an index's platforms) against s.
func decideScan(ev *evidence, s *rules.ScanRequirement, now time.Time) Decision {
	until := ev.info.pushedAt.Add(time.Duration(s.Wait))
	base := Decision{PushedAt: ev.info.pushedAt, Until: until}
	var pending, failed, blocking []string
	scanned := []string{ev.img.Digest}
	if ev.self.MediaType.IsIndex() {
		scanned = scanned[:0]
		for _, p := range ev.platforms {
			scanned = append(scanned, p.Digest.String())
		}
		if len(scanned) == 0 { // nothing scanned is nothing judged
			return blocked(base, CodeScanFailed, "the index lists no image to scan (only attestations or artifacts)")
		}
	}
	for _, d := range scanned {
		st := ev.scans[d]
		name := digestLabel(ev, d)
		switch st.status {
		case "COMPLETE", "ACTIVE":
			for _, f := range st.findings {
				if rules.SeverityRank(f.severity) >= rules.SeverityRank(s.Severity) && !slices.Contains(s.Allow, f.id) {
					blocking = append(blocking, fmt.Sprintf("%s %s%s", f.id, f.severity, name))
				}
			}
		case "", "IN_PROGRESS", "PENDING":
			what := "scan " + strings.ToLower(strings.ReplaceAll(cmpOr(st.status, "not started"), "_", " "))
			if st.missing {
				what = "no scan yet"
			}
			pending = append(pending, what+name)
		default:
			failed = append(failed, fmt.Sprintf("scan %s%s: %s", st.status, name, st.description))
		}
	}
	switch {
	case len(blocking) > 0:
		slices.Sort(blocking)
		return blocked(base, CodeScanFindings, fmt.Sprintf("%d finding(s) at or above %s: %s", len(blocking), s.Severity, clip(blocking)))
	case len(failed) > 0:
		return blocked(base, CodeScanFailed, clip(failed))
	case len(pending) > 0 && now.Before(until):
		return Decision{Verdict: Hold, Code: CodeScanPending, Reason: clip(pending), PushedAt: base.PushedAt, Until: until}
	case len(pending) > 0:
		return blocked(base, CodeScanTimeout, fmt.Sprintf("%s, %s after the push (scan.wait)", clip(pending), time.Duration(s.Wait)))
	}
	return Decision{Verdict: Pass, Reason: "scanned: nothing at or above " + s.Severity, PushedAt: base.PushedAt}
}

func blocked(base Decision, code, reason string) Decision {
	return Decision{Verdict: Block, Code: code, Reason: reason, PushedAt: base.PushedAt}
}

// digestLabel names a platform of the image in a reason (" (platform sha256:…)").
func digestLabel(ev *evidence, d string) string {
	if d == ev.img.Digest {
		return ""
	}
	return " (platform " + d + ")"
}

// clip joins reasons, keeping a reason short enough for a log line and an event.
func clip(items []string) string {
	const most = 5
	if len(items) <= most {
		return strings.Join(items, "; ")
	}
	return strings.Join(items[:most], "; ") + fmt.Sprintf("; and %d more", len(items)-most)
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
