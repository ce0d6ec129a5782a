package demo

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	ecrtypes "github.com/aws/aws-sdk-go-v2/service/ecr/types"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/lambdarun"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox/sign"
)

// The demo's promotion gate (docs/PROMOTION.md): team-b's images go to prod/ only when
// signed by the release key and scanned with nothing CRITICAL. The source scans every
// push a second after it; team-b/api has a CRITICAL finding.
const (
	gatedRepositories = "team-b/**"
	criticalCVE       = "CVE-2026-1234"
)

// gateRule is the rules document's gated rule (YAML, an item of rules:), for the
// release key's PEM and a destination (a flow mapping).
func gateRule(releasePEM string, dest string) string {
	return fmt.Sprintf(`  - name: promote
    repositories: [%q]
    require:
      signatures: {wait: 10s, signers: [{name: release, publicKey: %q}]}
      scan: {severity: CRITICAL, wait: 20s}
    destinations:
      - %s
`, gatedRepositories, releasePEM, dest)
}

// scanPolicy is the source registry's scanning: a second after each push, team-b/api's
// image has a CRITICAL finding.
func scanPolicy() *sandbox.ScanPolicy {
	return &sandbox.ScanPolicy{Delay: time.Second, Findings: func(repo, _ string) []sandbox.ScanFinding {
		if repo == "team-b/api" {
			return []sandbox.ScanFinding{{Name: criticalCVE, Severity: "CRITICAL", Description: "a critical vulnerability (demo)"}}
		}
		return nil
	}}
}

// gateDemo pushes and signs two images of a gated repository: one promoted once its
// scan completes, one blocked by its finding.
type gateDemo struct {
	src, dst *side
	key      *sign.Key
	pool     *lambdarun.Pool
	step     func(string, ...any)
}

func (g *gateDemo) run(ctx context.Context) error {
	for _, repo := range []string{"team-b/web", "team-b/api"} {
		if _, err := g.src.API.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo),
			ImageScanningConfiguration: &ecrtypes.ImageScanningConfiguration{ScanOnPush: true}}); err != nil {
			return err
		}
	}
	web, pushedAt, err := g.pushSigned(ctx, "team-b/web")
	if err != nil {
		return err
	}
	seen, err := g.dst.waitFor(ctx, "prod/team-b/web", "v1", web, ReplicaTimeout)
	if err != nil {
		return fmt.Errorf("team-b/web was not promoted: %w", err)
	}
	g.step("  -> promoted team-b/web:v1 to prod/team-b/web:v1, %.1f s after the push: held until its scan completed, then copied on the \"ECR Image Scan\" event, its signature with it", seen.Sub(pushedAt).Seconds())

	api, _, err := g.pushSigned(ctx, "team-b/api")
	if err != nil {
		return err
	}
	line, err := g.awaitBlocked(ctx, "team-b/api", ReplicaTimeout)
	if err != nil {
		return err
	}
	if got, _ := g.dst.digest(ctx, "prod/team-b/api", "v1"); got != "" {
		return fmt.Errorf("team-b/api (%s) was copied despite its CRITICAL finding", api)
	}
	g.step("  -> blocked team-b/api:v1: %s: %s (an error log line, the GateBlocked metric by rule and reason); not in prod/", line["error_code"], line["reason"])
	return nil
}

// pushSigned pushes an image as crane push does, then signs it as cosign sign --key does.
func (g *gateDemo) pushSigned(ctx context.Context, repo string) (string, time.Time, error) {
	img, _ := random.Image(64<<10, 2)
	d, _ := img.Digest()
	if err := g.src.write(repo, "v1", img); err != nil {
		return "", time.Time{}, err
	}
	pushedAt := time.Now()
	r, err := name.NewRepository(g.src.Host + "/" + repo)
	if err != nil {
		return "", pushedAt, err
	}
	sr := sign.Repo{Name: r, Auth: g.src.Auth}
	subject, err := sr.Subject(d.String())
	if err == nil {
		_, err = g.key.Cosign(sr, subject)
	}
	if err != nil {
		return "", pushedAt, fmt.Errorf("signing %s: %w", repo, err)
	}
	g.step("pushed %s:v1 and signed it with the release key (the sha256-<digest>.sig tag, as cosign sign --key stores it); its scan is in progress", repo)
	return d.String(), pushedAt, nil
}

// awaitBlocked waits for the function's log line blocking repo.
func (g *gateDemo) awaitBlocked(ctx context.Context, repo string, timeout time.Duration) (map[string]any, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for _, fn := range g.pool.Functions() {
			for _, l := range fn.JSONLines() {
				if l["msg"] == "image blocked by a promotion gate (permanent)" && l["repository"] == repo {
					return l, nil
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("%s was not blocked within %s", repo, timeout)
}

// digest is what the side has for repo:tag ("" if nothing).
func (s *side) digest(ctx context.Context, repo, tag string) (string, error) {
	out, err := s.API.DescribeImages(ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String(repo), ImageIds: []ecrtypes.ImageIdentifier{{ImageTag: aws.String(tag)}}})
	if err != nil {
		if strings.Contains(err.Error(), "NotFoundException") {
			return "", nil
		}
		return "", err
	}
	return aws.ToString(out.ImageDetails[0].ImageDigest), nil
}
