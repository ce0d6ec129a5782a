package gate_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/kms"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/gate"
	"github.com/ecr-replicator/ecr-replicator/internal/gate/verify"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/sandboxtest"
	"github.com/ecr-replicator/ecr-replicator/internal/tooling/testing/signing"
)

// env is a sandbox with the test's signers and a gate over its source registry.
type env struct {
	w       *sandboxtest.World
	key     *signing.Key
	kmsKey  *signing.Key // its public half is a KMS key's
	other   *signing.Key
	sig     *signing.Sigstore
	notary  *signing.Notary
	require map[string]*rules.Require
	g       *gate.Gate
	n       int
}

const (
	identity = "release@example.com"
	issuer   = "https://issuer.example.com"
)

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{w: sandboxtest.Start(t), key: signing.NewKey(t), kmsKey: signing.NewKey(t), other: signing.NewKey(t), sig: signing.NewSigstore(t), notary: signing.NewNotary(t, "release")}
	kmsARN := e.w.SB.PutKMSPublicKey(sandbox.SourceAccount, sandbox.DefaultRegion, "1234abcd-12ab-34cd-56ef-1234567890ab", "ECC_NIST_P256", e.kmsKey.PublicDER(t))
	doc := fmt.Sprintf(`{"rules":[
	  {"name":"key","require":{"signatures":{"signers":[{"name":"release-key","publicKey":%q}]}},"destinations":[{"accountId":"222222222222","region":"us-east-1"}]},
	  {"name":"all","require":{"signatures":{"platforms":"all","signers":[{"name":"release-key","publicKey":%q}]}},"destinations":[{"accountId":"222222222222","region":"us-east-1"}]},
	  {"name":"keyless","require":{"signatures":{"signers":[{"name":"ci","keyless":{"issuer":%q,"subjectRegExp":"release@.*","trustedRoot":%q}}]}},"destinations":[{"accountId":"222222222222","region":"us-east-1"}]},
	  {"name":"notation","require":{"signatures":{"signers":[{"name":"signer","notation":{"trustStore":%q,"trustedIdentities":["x509.subject: %s"]}}]}},"destinations":[{"accountId":"222222222222","region":"us-east-1"}]},
	  {"name":"scan","require":{"scan":{"severity":"HIGH","allow":["CVE-2026-0001"],"wait":"1h"}},"destinations":[{"accountId":"222222222222","region":"us-east-1"}]},
	  {"name":"expired","require":{"signatures":{"wait":"1s","signers":[{"publicKey":%q}]},"scan":{"severity":"CRITICAL","wait":"1s"}},"destinations":[{"accountId":"222222222222","region":"us-east-1"}]},
	  {"name":"kms","require":{"signatures":{"signers":[{"name":"kms","kmsKey":%q}]}},"destinations":[{"accountId":"222222222222","region":"us-east-1"}]},
	  {"name":"authority","require":{"signatures":{"signers":[{"name":"signer","notation":{"trustStore":%q,"trustStoreType":"signingAuthority","trustedIdentities":["x509.subject: %s"]}}]}},"destinations":[{"accountId":"222222222222","region":"us-east-1"}]}
	]}`, e.key.PublicPEM(t), e.key.PublicPEM(t), issuer, e.sig.TrustedRoot(t), e.notary.RootPEM(), e.notary.Subject(), e.key.PublicPEM(t), kmsARN,
		e.notary.RootPEM(), e.notary.Subject())
	d, err := rules.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	e.require = map[string]*rules.Require{}
	for i := range d.Rules {
		e.require[d.Rules[i].Name] = d.Rules[i].Require
	}
	vs, err := verify.Compile(d, verify.Options{KMS: kms.NewFromConfig(e.w.Source.Config)})
	if err != nil {
		t.Fatal(err)
	}
	e.g = gate.New(gate.Config{Resolver: ecraccess.NewResolver(e.w.Source.Config), Verifiers: vs})
	return e
}

// push pushes a fresh image to a repository of its own and returns it with its
// signing handle.
func (e *env) push(t *testing.T, img v1.Image) (gate.Image, signing.Repo, v1.Descriptor) {
	t.Helper()
	e.n++
	repo := fmt.Sprintf("team/app-%d", e.n)
	e.w.Source.EnsureRepository(t, e.w.Ctx, repo)
	if img == nil {
		img, _ = random.Image(512, 1)
	}
	d := e.w.Source.Push(t, repo, "v1", img)
	r := signing.NewRepo(t, e.w.Source.Host, repo, e.w.Source.Auth)
	return gate.Image{Repo: ecrname.Repo{Registry: ecrname.Registry{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion}, Name: repo}, Digest: d.String()}, r, r.Subject(t, d.String())
}

func (e *env) decide(t *testing.T, img gate.Image, rule string) gate.Decision {
	t.Helper()
	ds, err := e.g.Decide(context.Background(), img, []*rules.Require{e.require[rule]})
	if err != nil {
		t.Fatalf("decide: %v", err)
	}
	return ds[0]
}

func expect(t *testing.T, d gate.Decision, v gate.Verdict, code, reason string) {
	t.Helper()
	if d.Verdict != v || d.Code != code || !strings.Contains(d.Reason, reason) {
		t.Fatalf("decision %s, want %s (%s) with %q", d, v, code, reason)
	}
}

// TestSignatures decides one image per case: each signature format the gate reads, each
// way a signature can fail.
func TestSignatures(t *testing.T) {
	e := newEnv(t)
	other, _ := random.Image(256, 1)
	otherDigest, _ := other.Digest()
	cases := []struct {
		name, rule string
		sign       func(t *testing.T, r signing.Repo, s v1.Descriptor)
		verdict    gate.Verdict
		code       string
		reason     string
	}{
		{"unsigned", "key", nil, gate.Hold, gate.CodeSignatureMissing, "no signature"},
		{"cosign tag, trusted key", "key", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.key.Cosign(t, r, s, signing.Options{})
		}, gate.Pass, "", "signed by release-key"},
		{"cosign referrer, trusted key", "key", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.key.Cosign(t, r, s, signing.Options{Referrer: true})
		}, gate.Pass, "", "signed by release-key"},
		{"another key", "key", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.other.Cosign(t, r, s, signing.Options{})
		}, gate.Block, gate.CodeSignatureUntrusted, "does not verify with this key"},
		{"tampered payload", "key", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.key.Cosign(t, r, s, signing.Options{Tamper: true})
		}, gate.Block, gate.CodeSignatureUntrusted, "does not verify with this key"},
		{"signature of another digest", "key", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.key.Cosign(t, r, s, signing.Options{SignedDigest: otherDigest.String()})
		}, gate.Block, gate.CodeSignatureUntrusted, "a signature of " + otherDigest.String()},
		{"an untrusted and a trusted signature", "key", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.other.Cosign(t, r, s, signing.Options{Referrer: true})
			e.key.Cosign(t, r, s, signing.Options{})
		}, gate.Pass, "", "signed by release-key"},
		{"key bundle (cosign v3)", "key", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.key.Bundle(t, r, s, s.Digest)
		}, gate.Pass, "", "signed by release-key"},
		{"key bundle of another digest", "key", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.key.Bundle(t, r, s, otherDigest)
		}, gate.Block, gate.CodeSignatureUntrusted, "referrer"},
		{"keyless cosign", "keyless", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.sig.Cosign(t, r, s, identity, issuer, signing.Options{})
		}, gate.Pass, "", "signed by ci"},
		{"keyless cosign, other identity", "keyless", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.sig.Cosign(t, r, s, "intruder@example.com", issuer, signing.Options{})
		}, gate.Block, gate.CodeSignatureUntrusted, "intruder@example.com"},
		{"keyless cosign, tampered payload", "keyless", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.sig.Cosign(t, r, s, identity, issuer, signing.Options{Tamper: true})
		}, gate.Block, gate.CodeSignatureUntrusted, "sha256"},
		{"keyless cosign, another Sigstore", "keyless", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			signing.NewSigstore(t).Cosign(t, r, s, identity, issuer, signing.Options{})
		}, gate.Block, gate.CodeSignatureUntrusted, "ci: "},
		{"keyless bundle (cosign v3)", "keyless", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.sig.Bundle(t, r, s, identity, issuer, "")
		}, gate.Pass, "", "signed by ci"},
		{"keyless attestation only", "keyless", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.sig.Bundle(t, r, s, identity, issuer, "https://slsa.dev/provenance/v1")
		}, gate.Hold, gate.CodeSignatureMissing, "no signature"},
		{"notation JWS", "notation", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.notary.Sign(t, r, s, "application/jose+json", nil)
		}, gate.Pass, "", "signed by signer"},
		{"notation COSE", "notation", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.notary.Sign(t, r, s, "application/cose", nil)
		}, gate.Pass, "", "signed by signer"},
		{"notation, another authority", "notation", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			signing.NewNotary(t, "release").Sign(t, r, s, "application/jose+json", nil)
		}, gate.Block, gate.CodeSignatureUntrusted, "signer: "},
		{"notation, another descriptor", "notation", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			o := s
			o.Digest = otherDigest
			e.notary.Sign(t, r, s, "application/jose+json", &o)
		}, gate.Block, gate.CodeSignatureUntrusted, "another artifact"},
		{"KMS key", "kms", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.kmsKey.Cosign(t, r, s, signing.Options{})
		}, gate.Pass, "", "signed by kms"},
		{"not the KMS key", "kms", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.key.Cosign(t, r, s, signing.Options{})
		}, gate.Block, gate.CodeSignatureUntrusted, "kms: the signature does not verify"},
		{"notation, signing authority", "authority", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.notary.SignAsAWSSigner(t, r, s, false)
		}, gate.Pass, "", "signed by signer"},
		{"AWS Signer (its verification plugin)", "authority", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.notary.SignAsAWSSigner(t, r, s, true)
		}, gate.Block, gate.CodeSignatureUntrusted, "requires the Notation verification plugin com.amazonaws.signer.notation.plugin"},
		{"notation signature, cosign signer", "key", func(t *testing.T, r signing.Repo, s v1.Descriptor) {
			e.notary.Sign(t, r, s, "application/jose+json", nil)
		}, gate.Block, gate.CodeSignatureUntrusted, "a notation signature, which no trusted signer verifies"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, r, subject := e.push(t, nil)
			if c.sign != nil {
				c.sign(t, r, subject)
			}
			expect(t, e.decide(t, img, c.rule), c.verdict, c.code, c.reason)
		})
	}
}

// index builds a two-platform index and pushes it; sign signs its platforms as asked.
func (e *env) index(t *testing.T) (gate.Image, signing.Repo, v1.Descriptor, []v1.Descriptor) {
	t.Helper()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, arch := range []string{"amd64", "arm64"} {
		img, _ := random.Image(256, 1)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: arch}}})
	}
	e.n++
	repo := fmt.Sprintf("team/index-%d", e.n)
	e.w.Source.EnsureRepository(t, e.w.Ctx, repo)
	d := e.w.Source.Push(t, repo, "v1", idx)
	r := signing.NewRepo(t, e.w.Source.Host, repo, e.w.Source.Auth)
	im, _ := idx.IndexManifest()
	var platforms []v1.Descriptor
	for _, m := range im.Manifests {
		platforms = append(platforms, r.Subject(t, m.Digest.String()))
	}
	img := gate.Image{Repo: ecrname.Repo{Registry: ecrname.Registry{AccountID: sandbox.SourceAccount, Region: sandbox.DefaultRegion}, Name: repo}, Digest: d.String()}
	return img, r, r.Subject(t, d.String()), platforms
}

// TestIndex: with platforms: index (the default) the index's signature is enough — it
// names every platform by digest; with platforms: all, an unsigned platform holds the
// index, a platform signed by another key blocks it.
func TestIndex(t *testing.T) {
	e := newEnv(t)
	img, r, self, platforms := e.index(t)
	e.key.Cosign(t, r, self, signing.Options{})
	e.key.Cosign(t, r, platforms[0], signing.Options{})
	expect(t, e.decide(t, img, "key"), gate.Pass, "", "signed by release-key")
	d := e.decide(t, img, "all")
	expect(t, d, gate.Hold, gate.CodeSignatureMissing, "no signature (platform "+platforms[1].Digest.String()+")")
	if strings.Contains(d.Reason, platforms[0].Digest.String()) {
		t.Errorf("the signed platform is named: %s", d.Reason)
	}
	e.other.Cosign(t, r, platforms[1], signing.Options{})
	expect(t, e.decide(t, img, "all"), gate.Block, gate.CodeSignatureUntrusted, platforms[1].Digest.String())
	e.key.Cosign(t, r, platforms[1], signing.Options{Referrer: true})
	expect(t, e.decide(t, img, "all"), gate.Pass, "", "signed by")
}

// TestScan: the scan's states as DescribeImageScanFindings answers them, against
// severity HIGH with CVE-2026-0001 allowed.
func TestScan(t *testing.T) {
	e := newEnv(t)
	set := func(t *testing.T, img gate.Image, r sandbox.ScanResult) {
		t.Helper()
		if err := e.w.SB.SetImageScan(img.Repo.AccountID, img.Repo.Region, img.Repo.Name, img.Digest, r); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name    string
		scan    *sandbox.ScanResult
		verdict gate.Verdict
		code    string
		reason  string
	}{
		{"no scan yet", nil, gate.Hold, gate.CodeScanPending, "no scan yet"},
		{"in progress", &sandbox.ScanResult{Status: "IN_PROGRESS"}, gate.Hold, gate.CodeScanPending, "scan in progress"},
		{"clean", &sandbox.ScanResult{Findings: []sandbox.ScanFinding{{Name: "CVE-1", Severity: "MEDIUM"}}}, gate.Pass, "", "nothing at or above HIGH"},
		{"critical", &sandbox.ScanResult{Findings: []sandbox.ScanFinding{{Name: "CVE-2026-9999", Severity: "CRITICAL"}, {Name: "CVE-2", Severity: "LOW"}}},
			gate.Block, gate.CodeScanFindings, "CVE-2026-9999 CRITICAL"},
		{"allowed critical", &sandbox.ScanResult{Findings: []sandbox.ScanFinding{{Name: "CVE-2026-0001", Severity: "CRITICAL"}}}, gate.Pass, "", ""},
		{"enhanced high", &sandbox.ScanResult{Status: "ACTIVE", Enhanced: true, Findings: []sandbox.ScanFinding{{Name: "CVE-2026-7777", Severity: "HIGH"}}},
			gate.Block, gate.CodeScanFindings, "CVE-2026-7777 HIGH"},
		{"enhanced suppressed", &sandbox.ScanResult{Status: "ACTIVE", Enhanced: true, Findings: []sandbox.ScanFinding{
			{Name: "CVE-2026-7778", Severity: "CRITICAL", Status: "SUPPRESSED"}, {Name: "CVE-3", Severity: "LOW"}}},
			gate.Pass, "", "nothing at or above HIGH"},
		{"enhanced pending", &sandbox.ScanResult{Status: "PENDING", Enhanced: true}, gate.Hold, gate.CodeScanPending, "scan pending"},
		{"failed", &sandbox.ScanResult{Status: "FAILED", Description: "unable to scan"}, gate.Block, gate.CodeScanFailed, "unable to scan"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, _, _ := e.push(t, nil)
			if c.scan != nil {
				set(t, img, *c.scan)
			}
			expect(t, e.decide(t, img, "scan"), c.verdict, c.code, c.reason)
		})
	}
	t.Run("index: each platform", func(t *testing.T) {
		img, _, _, platforms := e.index(t)
		set(t, gate.Image{Repo: img.Repo, Digest: platforms[0].Digest.String()}, sandbox.ScanResult{})
		expect(t, e.decide(t, img, "scan"), gate.Hold, gate.CodeScanPending, "no scan yet (platform "+platforms[1].Digest.String())
		set(t, gate.Image{Repo: img.Repo, Digest: platforms[1].Digest.String()}, sandbox.ScanResult{Findings: []sandbox.ScanFinding{{Name: "CVE-9", Severity: "HIGH"}}})
		expect(t, e.decide(t, img, "scan"), gate.Block, gate.CodeScanFindings, "CVE-9 HIGH (platform "+platforms[1].Digest.String())
	})
}

// TestKMSUnavailable: a KMS key whose public key cannot be had now is no verdict: the
// decision fails, retryable, and the next one (the key fetched) decides.
func TestKMSUnavailable(t *testing.T) {
	e := newEnv(t)
	img, r, s := e.push(t, nil)
	e.kmsKey.Cosign(t, r, s, signing.Options{})
	if err := e.w.SB.ThrottleAPI("kms", "GetPublicKey", 10); err != nil {
		t.Fatal(err)
	}
	_, err := e.g.Decide(context.Background(), img, []*rules.Require{e.require["kms"]})
	if code, retryable := retry.Classify(err); code != "ThrottlingException" || !retryable {
		t.Fatalf("decide with KMS throttled: %v (%s, retryable %v)", err, code, retryable)
	}
	e.w.SB.ClearFaults()
	expect(t, e.decide(t, img, "kms"), gate.Pass, "", "signed by kms")
}

// TestWaitEnds: past its wait after the push, what is still missing blocks.
func TestWaitEnds(t *testing.T) {
	e := newEnv(t)
	img, _, _ := e.push(t, nil)
	time.Sleep(1100 * time.Millisecond)
	expect(t, e.decide(t, img, "expired"), gate.Block, gate.CodeSignatureTimeout, "1s after the push (signatures.wait)")
}
