package sandbox

import (
	"cmp"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Image scanning: ECR scans an image for vulnerabilities on push (basic scanning, when
// the repository has scanOnPush) or continuously (enhanced scanning, with Amazon
// Inspector), and answers the result with DescribeImageScanFindings and in DescribeImages
// (imageScanStatus, imageScanFindingsSummary).
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning.html
//
// In the sandbox a scan's result is set per digest, by a test or the demo (SetImageScan),
// or by the registry's scan policy (SetScanPolicy) on push; a result that ends a scan
// emits the event ECR or Inspector sends:
//   - basic: "ECR Image Scan" from aws.ecr, detail scan-status COMPLETE (or FAILED),
//     repository-name, image-digest, image-tags and finding-severity-counts with the
//     non-zero counts only, resources the repository ARN
//     (https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-eventbridge.html);
//   - enhanced: "Inspector2 Scan" from aws.inspector2, detail scan-status
//     INITIAL_SCAN_COMPLETE, repository-name the repository ARN, finding-severity-counts
//     with a TOTAL, image-digest, image-tags
//     (https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning-enhanced-events.html).
//
// Guesses: an index is never scanned itself (its platforms are images of their own),
// nor is an artifact whose config is not an image configuration (a signature, an SBOM):
// DescribeImageScanFindings answers them ScanNotFoundException, as it does an image no
// scan was started for. Findings are the policy's or the test's; nothing is really
// scanned.

// ScanFinding is one vulnerability finding.
type ScanFinding struct {
	// Name is the finding's ID (a CVE ID): basic scanning's name, enhanced scanning's
	// packageVulnerabilityDetails.vulnerabilityId and title.
	Name string
	// Severity: CRITICAL, HIGH, MEDIUM, LOW, INFORMATIONAL or UNDEFINED.
	Severity    string
	Description string
	// Status is an enhanced finding's status, Amazon Inspector's: ACTIVE (default),
	// SUPPRESSED (a suppression rule of the account matches it) or CLOSED
	// (https://docs.aws.amazon.com/inspector/v2/APIReference/API_Finding.html; ECR returns
	// it as EnhancedImageScanFinding.status). Basic findings have none.
	Status string
}

// ScanResult is the state of one image's scan.
type ScanResult struct {
	// Status is ECR's imageScanStatus.status: IN_PROGRESS, PENDING, COMPLETE, ACTIVE,
	// FAILED, UNSUPPORTED_IMAGE, …
	Status      string
	Description string
	Findings    []ScanFinding
	// Enhanced: the result is Amazon Inspector's (enhancedFindings, "Inspector2 Scan").
	Enhanced    bool
	completedAt time.Time
}

// ScanPolicy is what the registry of an account and region does on a push to a
// repository that scans on push: the scan is IN_PROGRESS (PENDING for enhanced)
// until Delay passes, then completes with Findings(repository, digest).
type ScanPolicy struct {
	Delay    time.Duration
	Findings func(repository, digest string) []ScanFinding
	// Enhanced scans every image pushed, whatever the repository's scanOnPush, as
	// Inspector does for a registry with enhanced scanning.
	Enhanced bool
}

// SetScanPolicy sets the scan policy of a registry (nil: none; only SetImageScan sets
// results).
func (s *Sandbox) SetScanPolicy(account, region string, p *ScanPolicy) error {
	reg, err := s.registry(account, region)
	if err != nil {
		return err
	}
	reg.mu.Lock()
	defer reg.mu.Unlock()
	reg.scanPolicy = p
	return nil
}

// SetImageScan sets the scan result of an image; a status that ends a scan (COMPLETE,
// ACTIVE, FAILED, UNSUPPORTED_IMAGE) emits the scan-complete event.
func (s *Sandbox) SetImageScan(account, region, repository, digest string, r ScanResult) error {
	reg, err := s.registry(account, region)
	if err != nil {
		return err
	}
	reg.mu.Lock()
	repo, ok := reg.repos[repository]
	var rec *manifestRecord
	if ok {
		rec = repo.manifests[digest]
	}
	if rec == nil {
		reg.mu.Unlock()
		return fmt.Errorf("sandbox: no image %s in %s/%s/%s", digest, account, region, repository)
	}
	if r.Status == "" {
		r.Status = "COMPLETE"
	}
	if scanEnded(r.Status) {
		r.completedAt = s.now()
	}
	rr := r
	rec.scan = &rr
	tags := repo.tagsOf(digest)
	reg.mu.Unlock()
	if scanEnded(r.Status) {
		reg.emitScan(repository, digest, tags, r)
	}
	return nil
}

func scanEnded(status string) bool {
	switch status {
	case "COMPLETE", "ACTIVE", "FAILED", "UNSUPPORTED_IMAGE", "FINDINGS_UNAVAILABLE", "SCAN_ELIGIBILITY_EXPIRED":
		return true
	}
	return false
}

// scanOnPush starts the policy's scan of a manifest just stored (the registry's lock is
// held).
func (r *registry) scanOnPush(repo *repository, rec *manifestRecord) {
	p := r.scanPolicy
	if p == nil || (!repo.scanOnPush && !p.Enhanced) || !scannable(rec) || rec.scan != nil {
		return
	}
	// A basic scan in progress is IN_PROGRESS; an enhanced one (Inspector's) is PENDING
	// until its findings are ACTIVE ("PENDING: The scan is in progress, and the findings
	// aren't available yet"; valid values of
	// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageScanStatus.html,
	// described in https://docs.aws.amazon.com/AmazonECRPublic/latest/APIReference/API_ImageScanStatus.html).
	status := "IN_PROGRESS"
	if p.Enhanced {
		status = "PENDING"
	}
	rec.scan = &ScanResult{Status: status, Enhanced: p.Enhanced}
	name, digest := repo.name, rec.digest
	time.AfterFunc(p.Delay, func() {
		var findings []ScanFinding
		if p.Findings != nil {
			findings = p.Findings(name, digest)
		}
		status := "COMPLETE"
		if p.Enhanced {
			status = "ACTIVE"
		}
		// The image may be gone by now: nothing to complete then.
		_ = r.sb.SetImageScan(r.account, r.region, name, digest, ScanResult{Status: status, Findings: findings, Enhanced: p.Enhanced})
	})
}

// scannable: an image manifest whose config is an image configuration.
func scannable(rec *manifestRecord) bool {
	switch rec.artifactType {
	case "application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json":
		return !isIndexType(rec.mediaType)
	}
	return false
}

// severityCounts counts the findings by severity (non-zero counts only).
func severityCounts(fs []ScanFinding) map[string]int {
	out := map[string]int{}
	for _, f := range fs {
		out[f.Severity]++
	}
	return out
}

// emitScan sends the scan-complete event of an image.
func (r *registry) emitScan(repository, digest string, tags []string, res ScanResult) {
	arn := r.repositoryARN(repository)
	if tags == nil {
		tags = []string{}
	}
	counts := severityCounts(res.Findings)
	if res.Enhanced {
		counts["TOTAL"] = len(res.Findings)
		r.sb.emitServiceEventWith(r.account, r.region, "aws.inspector2", "Inspector2 Scan", []string{arn}, map[string]any{
			"scan-status": "INITIAL_SCAN_COMPLETE", "repository-name": arn, "finding-severity-counts": counts,
			"image-digest": digest, "image-tags": tags,
		})
		return
	}
	status := "COMPLETE"
	if res.Status != "COMPLETE" {
		status = res.Status
	}
	r.sb.emitServiceEventWith(r.account, r.region, ecrEventSource, "ECR Image Scan", []string{arn}, map[string]any{
		"scan-status": status, "repository-name": repository, "finding-severity-counts": counts,
		"image-digest": digest, "image-tags": tags,
	})
}

// scanSummary is DescribeImages' imageScanStatus and imageScanFindingsSummary of an image.
func scanSummary(d *imageDetail, rec *manifestRecord) {
	if rec.scan == nil {
		return
	}
	d.ImageScanStatus = &scanStatusJSON{Status: rec.scan.Status, Description: rec.scan.Description}
	if !rec.scan.completedAt.IsZero() {
		d.ImageScanFindingsSummary = &findingsSummaryJSON{
			FindingSeverityCounts: severityCounts(rec.scan.Findings), ImageScanCompletedAt: epoch(rec.scan.completedAt),
			VulnerabilitySourceUpdatedAt: epoch(rec.scan.completedAt),
		}
	}
}

type scanStatusJSON struct {
	Status      string `json:"status"`
	Description string `json:"description,omitempty"`
}

type findingsSummaryJSON struct {
	FindingSeverityCounts        map[string]int `json:"findingSeverityCounts"`
	ImageScanCompletedAt         epoch          `json:"imageScanCompletedAt"`
	VulnerabilitySourceUpdatedAt epoch          `json:"vulnerabilitySourceUpdatedAt"`
}

// DescribeImageScanFindings:
// https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeImageScanFindings.html
// (maxResults 1 to 1000, default 100, with nextToken).
func (r *registry) describeImageScanFindings(name string, id *imageID, maxResults *int, token string) (any, *apiError) {
	if id == nil || (id.Digest == "" && id.Tag == "") {
		return nil, errorf(400, "InvalidParameterException", "imageId is required")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	repo, ok := r.repos[name]
	if !ok {
		return nil, r.repoNotFound(name)
	}
	rec, code, msg := repo.resolve(*id)
	if rec == nil {
		if code == "ImageNotFound" {
			return nil, errorf(400, "ImageNotFoundException", "The image with imageId {imageDigest:'%s', imageTag:'%s'} does not exist within the repository with name '%s' in the registry with id '%s'", id.Digest, id.Tag, name, r.account)
		}
		return nil, errorf(400, "InvalidParameterException", "%s", msg)
	}
	if rec.scan == nil {
		return nil, errorf(400, "ScanNotFoundException", "Image scan does not exist for the image with '{imageDigest:'%s', imageTag:'%s'}' in the repository with name '%s' in the registry with id '%s'", rec.digest, id.Tag, name, r.account)
	}
	sc := rec.scan
	out := map[string]any{
		"registryId": r.account, "repositoryName": name, "imageId": imageID{Digest: rec.digest, Tag: id.Tag},
		"imageScanStatus": scanStatusJSON{Status: sc.Status, Description: sc.Description},
	}
	if sc.completedAt.IsZero() {
		return out, nil
	}
	fs := append([]ScanFinding(nil), sc.Findings...)
	sort.SliceStable(fs, func(i, j int) bool { return fs[i].Name < fs[j].Name })
	start, end, next, err := pageBounds(len(fs), maxResults, token, 100)
	if err != nil {
		return nil, err
	}
	findings := map[string]any{
		"imageScanCompletedAt": epoch(sc.completedAt), "vulnerabilitySourceUpdatedAt": epoch(sc.completedAt),
		"findingSeverityCounts": severityCounts(sc.Findings),
	}
	var page []map[string]any
	for _, f := range fs[start:end] {
		if sc.Enhanced {
			page = append(page, map[string]any{
				"awsAccountId": r.account, "description": f.Description, "severity": f.Severity, "status": cmp.Or(f.Status, "ACTIVE"),
				"title": f.Name, "type": "PACKAGE_VULNERABILITY",
				"findingArn":                  fmt.Sprintf("arn:aws:inspector2:%s:%s:finding/%x", r.region, r.account, strings.ToLower(f.Name)),
				"packageVulnerabilityDetails": map[string]any{"vulnerabilityId": f.Name, "source": "NVD"},
			})
			continue
		}
		page = append(page, map[string]any{"name": f.Name, "severity": f.Severity, "description": f.Description, "uri": "https://cve.example/" + f.Name})
	}
	if page == nil {
		page = []map[string]any{}
	}
	if sc.Enhanced {
		findings["enhancedFindings"] = page
	} else {
		findings["findings"] = page
	}
	out["imageScanFindings"] = findings
	return withToken(out, next), nil
}
