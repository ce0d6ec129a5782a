package conformance_test

import (
	"context"
	"encoding/base64"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
)

// suite is the conformance suite's package, pinned in tools/go.mod.
const suite = "github.com/opencontainers/distribution-spec/conformance"

// knownFailures are the suite's failures that real ECR shares: a spec whose name contains
// spec fails with a message containing message (any, when empty), for the reason why.
// Any other failure fails the test.
var knownFailures = []struct{ spec, message, why string }{
	{"OCI Conformance Test/sha512", "",
		"ECR digests are sha256 only: imageDigest and layerDigest are sha256 " +
			"(https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_ImageIdentifier.html, " +
			"https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_CompleteLayerUpload.html)"},
	{"OCI Conformance Test/sha256 blobs/", "blob patch failed: unexpected status code, expected one of [202], received 201",
		"ECR answers an intermediate PATCH with 201, not 202 (aws/containers-roadmap#2831; dotnet/sdk-container-builds#279, written with the ECR team)"},
	{"OCI Conformance Test/sha256 blobs/empty/", "",
		"ECR has no zero-byte blobs: completing an upload without parts is refused (EmptyUploadException; " +
			"400 BLOB_UPLOAD_INVALID \"…cannot be completed because it does not have any parts\": " +
			"radius-project/radius#7887, devcontainers/cli#814)"},
}

// knownSkips are the specs the suite may skip (it skips what a registry answers as
// unsupported, and what the default configuration disables). Any other skip fails the
// test: it would hide a sandbox answering "unsupported" where ECR supports the API.
var knownSkips = []struct{ spec, why string }{
	{"/blob-delete", "ECR has no blob DELETE (405): images are deleted with BatchDeleteImage " +
		"(https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_BatchDeleteImage.html)"},
	{"/blob-mount-anonymous", "ECR attempts a mount only when the POST names both mount and from: without from, " +
		"a normal upload starts (202) (https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html)"},
	{"/blob-mount", "ECR mounts only a blob that a manifest in the from repository references, and the suite mounts " +
		"a blob it has just uploaded, unreferenced: ECR answers 202 and a normal upload starts, as the suite's fallback " +
		"expects (aws/containers-roadmap#2860; BLOB_MOUNTING is enabled for the run, " +
		"https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html)"},
	{"/blob-post-cancel", "disabled in the suite's default configuration (OCI_API_BLOBS_UPLOAD_CANCEL=false)"},
}

// junit is the part of the suite's junit.xml the test reads.
type junit struct {
	Suites []struct {
		Cases []struct {
			Name   string `xml:"name,attr"`
			Status string `xml:"status,attr"`
			Out    string `xml:"system-out"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the OCI conformance suite")
	}
	bin := buildSuite(t)
	w := sandboxtest.Start(t)
	ctx, cancel := context.WithTimeout(w.Ctx, 2*time.Minute)
	defer cancel()

	// As a user reaches ECR: repositories and the registry password through the ECR API.
	client := ecr.NewFromConfig(w.Config(t, sandbox.SourceAccount, sandbox.SourceUser))
	for _, repo := range []string{"conformance/repo1", "conformance/repo2"} {
		if _, err := client.CreateRepository(ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String(repo)}); err != nil {
			t.Fatal(err)
		}
	}
	// Blob mounting on, so the suite's mounts meet ECR's rule for them (see knownSkips).
	if _, err := client.PutAccountSetting(ctx, &ecr.PutAccountSettingInput{Name: aws.String("BLOB_MOUNTING"), Value: aws.String("ENABLED")}); err != nil {
		t.Fatal(err)
	}
	tok, err := client.GetAuthorizationToken(ctx, &ecr.GetAuthorizationTokenInput{})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := base64.StdEncoding.DecodeString(aws.ToString(tok.AuthorizationData[0].AuthorizationToken))
	if err != nil {
		t.Fatal(err)
	}
	user, pass, _ := strings.Cut(string(raw), ":")
	host := strings.TrimPrefix(aws.ToString(tok.AuthorizationData[0].ProxyEndpoint), "http://")

	dir := t.TempDir()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Dir = dir // no oci-conformance.yaml there: the environment configures the suite
	cmd.Env = append(os.Environ(),
		"OCI_REGISTRY="+host, "OCI_TLS=disabled",
		"OCI_REPO1=conformance/repo1", "OCI_REPO2=conformance/repo2",
		"OCI_USERNAME="+user, "OCI_PASSWORD="+pass,
		"OCI_RESULTS_DIR="+filepath.Join(dir, "results"), "OCI_LOG=error",
	)
	began := time.Now()
	out, err := cmd.CombinedOutput()
	took := time.Since(began)
	report, rerr := os.ReadFile(filepath.Join(dir, "results", "junit.xml"))
	if rerr != nil {
		t.Fatalf("the suite wrote no junit.xml (%v): %v\n%s", rerr, err, out)
	}
	var j junit
	if err := xml.Unmarshal(report, &j); err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, s := range j.Suites {
		for _, c := range s.Cases {
			counts[c.Status]++
			switch c.Status {
			case "skipped":
				if why := knownSkip(c.Name); why == "" {
					t.Errorf("unexpected skip: %s: %s", c.Name, firstLine(c.Out))
				} else if testing.Verbose() {
					t.Logf("skipped as ECR would: %s (%s)", c.Name, why)
				}
			case "failure", "error":
				if why := knownFailure(c.Name, c.Out); why == "" {
					t.Errorf("%s: %s\n%s", c.Status, c.Name, strings.TrimSpace(c.Out))
				} else if testing.Verbose() {
					t.Logf("failed as ECR would: %s (%s)", c.Name, why)
				}
			}
		}
	}
	t.Logf("OCI conformance against the sandbox: %d passed, %d failed, %d skipped (%d errors) in %v",
		counts["passed"], counts["failure"], counts["skipped"], counts["error"], took.Round(time.Millisecond))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

// knownFailure is the reason a failure is one ECR shares, or "". Every error line of the
// spec must be explained by the entry.
func knownFailure(name, out string) string {
	for _, k := range knownFailures {
		if !strings.Contains(name, k.spec) {
			continue
		}
		if k.message == "" {
			return k.why
		}
		explained := true
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.Contains(line, k.message) {
				explained = false
			}
		}
		if explained {
			return k.why
		}
	}
	return ""
}

func knownSkip(name string) string {
	for _, k := range knownSkips {
		if strings.Contains(name, k.spec) {
			return k.why
		}
	}
	return ""
}

// buildSuite builds the pinned suite into a temporary directory.
func buildSuite(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	tools := filepath.Join(filepath.Dir(file), "tools")
	bin := filepath.Join(t.TempDir(), "oci-conformance")
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", bin, suite)
	cmd.Dir = tools
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly -buildvcs=false")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the conformance suite: %v\n%s", err, out)
	}
	return bin
}
