package ecrevent

import (
	"fmt"
	"strings"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// Scan-complete events: what a promotion gate waiting for a scan re-decides on.
//   - Basic scanning: ECR sends "ECR Image Scan" (source aws.ecr), detail scan-status,
//     repository-name, image-digest, image-tags, finding-severity-counts
//     (https://docs.aws.amazon.com/AmazonECR/latest/userguide/ecr-eventbridge.html).
//   - Enhanced scanning: Amazon Inspector sends "Inspector2 Scan" (source
//     aws.inspector2) when an image's initial scan completes, whose repository-name is
//     the repository's ARN
//     (https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-scanning-enhanced-events.html).
//
// An event is a claim that a scan ended: the gate reads the scan itself from ECR
// (DescribeImageScanFindings), so only the image it names is taken from it.
const (
	DetailTypeImageScan     = "ECR Image Scan"
	SourceInspector         = "aws.inspector2"
	DetailTypeInspectorScan = "Inspector2 Scan"
)

// ImageScan is a scan-complete event.
type ImageScan struct {
	EventID    string
	Account    string // envelope account: the source registry
	Region     string
	Time       time.Time
	Repository string
	Digest     string
	Status     string // detail.scan-status, for logs
	Enhanced   bool   // Inspector's
}

// Repo is the repository the scanned image is in.
func (s *ImageScan) Repo() ecrname.Repo {
	return ecrname.Repo{Registry: ecrname.Registry{AccountID: s.Account, Region: s.Region}, Name: s.Repository}
}

// isImageScan says whether an envelope is a scan-complete event.
func isImageScan(env *envelope) bool {
	return (env.Source == EventSource && env.DetailType == DetailTypeImageScan) ||
		(env.Source == SourceInspector && env.DetailType == DetailTypeInspectorScan)
}

func parseImageScan(env *envelope) (Message, error) {
	s := &ImageScan{EventID: env.ID, Account: env.Account, Region: env.Region, Enhanced: env.Source == SourceInspector}
	a := &ImageAction{}
	if err := env.validate(a); err != nil {
		return Message{}, err
	}
	s.Time = a.Time
	var d struct {
		Status     *string `json:"scan-status"`
		Repository *string `json:"repository-name"`
		Digest     *string `json:"image-digest"`
	}
	if err := env.decodeDetail(&d); err != nil {
		return Message{}, err
	}
	if d.Repository == nil && s.Enhanced {
		// Amazon Inspector sends "Inspector2 Scan" for every resource it scans: an EC2
		// instance's names detail.instance-id, a Lambda function's its function, and no
		// repository (https://docs.aws.amazon.com/inspector/latest/user/eventbridge-integration.html).
		// Not an image's: nothing any gate waits for.
		return Message{Kind: KindImageScan, Class: Ignored,
			IgnoredReason: fmt.Sprintf("an Inspector scan of no ECR image (resources %s)", ecrname.Quote(strings.Join(env.Resources, ",")))}, nil
	}
	if d.Repository == nil {
		return Message{}, malformed("detail.repository-name", "required")
	}
	if d.Digest == nil {
		return Message{}, malformed("detail.image-digest", "required")
	}
	s.Repository, s.Digest, s.Status = *d.Repository, *d.Digest, str(d.Status)
	if strings.HasPrefix(s.Repository, "arn:") {
		// Inspector names the repository by ARN: its account and region must be the
		// envelope's.
		// arn:<partition>:ecr:<region>:<account>:repository/<name>
		parts := strings.SplitN(s.Repository, ":", 6)
		name, ok := "", len(parts) == 6 && parts[2] == "ecr" && parts[3] == s.Region && parts[4] == s.Account
		if ok {
			name, ok = strings.CutPrefix(parts[5], "repository/")
		}
		if !ok {
			return Message{}, malformed("detail.repository-name", "%s is not a repository of account %s in %s", ecrname.Quote(s.Repository), s.Account, s.Region)
		}
		s.Repository = name
	}
	if err := ecrname.Repository(s.Repository); err != nil {
		return Message{}, malformed("detail.repository-name", "%v", err)
	}
	if err := ecrname.Digest(s.Digest); err != nil {
		return Message{}, malformed("detail.image-digest", "%v", err)
	}
	return Message{Kind: KindImageScan, Class: Trigger, ImageScan: s}, nil
}
