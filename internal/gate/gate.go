// Package gate decides promotion gates (a rule's require, docs/PROMOTION.md): may this
// image be copied to a gated destination now (Pass), not yet (Hold: its signature or
// its scan may still come), or not (Block, with the reason)?
//
// A decision rests on what the source registry holds, never on a message's fields: the
// image as DescribeImages lists it (its push time starts the waits), its manifest (an
// index's platforms), the signatures stored with it (OCI 1.1 referrers and cosign's
// sha256-<hex>.sig tag, fetched from the registry and verified) and its scan
// (DescribeImageScanFindings).
//
// This package collects the evidence and weighs it; checking a signature's cryptography
// is a Verifier's job, built from the rules' signers by internal/gate/verify with the
// Sigstore and Notary Project libraries. Keeping those libraries out of this package
// keeps them out of the functions that never verify (the reconcile, the backfill).
package gate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// Verdict is what a gate decides.
type Verdict string

// Verdicts.
const (
	Pass  Verdict = "pass"
	Hold  Verdict = "held"
	Block Verdict = "blocked"
)

// Reason codes: what held or blocked an image (metrics' Reason dimension).
const (
	// Held.
	CodeSignatureMissing = "SignatureMissing" // no signature yet
	CodeScanPending      = "ScanPending"      // no scan result yet
	// Blocked.
	CodeSignatureUntrusted = "SignatureUntrusted" // signatures, none verified by a trusted signer
	CodeSignatureTimeout   = "SignatureTimeout"   // still no signature when the wait ended
	CodeScanFindings       = "ScanFindings"       // findings at or above the severity
	CodeScanFailed         = "ScanFailed"         // the scan ended without findings to judge
	CodeScanTimeout        = "ScanTimeout"        // still no scan result when the wait ended
)

// Decision is one requirement's verdict on one image.
type Decision struct {
	Verdict Verdict
	Code    string // empty for Pass
	Reason  string // what was found, for people
	// Until is when a Hold ends (the image's push plus the wait): re-decided by then, the
	// image is blocked if still undecided.
	Until time.Time
	// PushedAt is the image's push time, as ECR lists it.
	PushedAt time.Time
}

// Image is the image to decide on: a digest in a source repository.
type Image struct {
	Repo   ecrname.Repo
	Digest string
}

func (i Image) String() string { return i.Repo.String() + "@" + i.Digest }

// Verifier checks signatures against one trusted signer.
type Verifier interface {
	// Verify checks sig as a signature of subject: nil when this signer signed it.
	// ErrNotSignature when sig is an artifact of a signature format that does not sign
	// the image (an attestation); ErrOtherFormat when this signer cannot verify sig's
	// format at all (a Notation signature for a cosign key). Other errors say why it
	// failed (another key, a tampered payload, another digest).
	Verify(ctx context.Context, sig *Signature, subject v1.Descriptor) error
}

// Verifier errors that are no verdict on the signature.
var (
	ErrNotSignature = errors.New("not a signature of the image (an attestation or another artifact)")
	ErrOtherFormat  = errors.New("a signature format this signer does not verify")
)

// Verifiers are the compiled signers of a rules document, by signer.
type Verifiers map[*rules.Signer]Verifier

// Config is what a Gate is built from.
type Config struct {
	Resolver *ecraccess.Resolver
	// SourceRole is the rules' source.roleArn ("": the caller's own credentials).
	SourceRole string
	Verifiers  Verifiers
	Log        *slog.Logger
	Now        func() time.Time
}

// Gate decides gates. It is long-lived and safe for concurrent use.
type Gate struct{ c Config }

// New returns a Gate.
func New(c Config) *Gate {
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return &Gate{c: c}
}

// Decide decides each requirement for img, from one look at the source registry. An
// error means no decision could be made (the registry or the API failed); it carries
// the AWS or registry code (retry.Classify says whether trying again may help).
func (g *Gate) Decide(ctx context.Context, img Image, reqs []*rules.Require) ([]Decision, error) {
	ev, err := g.collect(ctx, img, needs(reqs))
	if err != nil {
		return nil, err
	}
	now := g.c.Now()
	out := make([]Decision, len(reqs))
	for i, r := range reqs {
		if out[i], err = g.decide(ctx, ev, r, now); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Lookup is what the source lists of a digest: its tags, and the subject it refers to
// when it is a referrer (a signature, an attestation).
type Lookup struct {
	Found    bool
	Digest   string
	Tags     []string
	Subject  string
	PushedAt time.Time
}

// Lookup lists one digest of the source (DescribeImages): a trigger (a scan finished, a
// signature arrived) re-decides the tags of the image it is about.
func (g *Gate) Lookup(ctx context.Context, img Image) (Lookup, error) {
	src, err := g.source(ctx, img)
	if err != nil {
		return Lookup{}, err
	}
	d, found, err := describe(ctx, src, img)
	if err != nil || !found {
		return Lookup{}, err
	}
	return Lookup{Found: true, Digest: img.Digest, Tags: d.tags, Subject: d.subject, PushedAt: d.pushedAt}, nil
}

// String names the decision for logs: "held (SignatureMissing: …)".
func (d Decision) String() string {
	if d.Verdict == Pass {
		return string(Pass)
	}
	return fmt.Sprintf("%s (%s: %s)", d.Verdict, d.Code, d.Reason)
}
