package gate

import (
	"context"
	"errors"
	"fmt"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
	"github.com/ecr-replicator/ecr-replicator/internal/rules"
)

// decide weighs the evidence against one requirement: blocked if any part blocks, else
// held if any part waits (until the earliest end of a wait, when it is decided again),
// else passed.
func (g *Gate) decide(ctx context.Context, ev *evidence, r *rules.Require, now time.Time) (Decision, error) {
	var parts []Decision
	if r.Signatures != nil {
		d, err := g.decideSignatures(ctx, ev, r.Signatures, now)
		if err != nil {
			return Decision{}, err
		}
		parts = append(parts, d)
	}
	if r.Scan != nil {
		parts = append(parts, decideScan(ev, r.Scan, now))
	}
	return combine(parts, ev.info.pushedAt), nil
}

func combine(parts []Decision, pushedAt time.Time) Decision {
	out := Decision{Verdict: Pass, PushedAt: pushedAt}
	var reasons []string
	for _, p := range parts {
		switch {
		case p.Verdict == Block:
			return p
		case p.Verdict == Hold && (out.Verdict != Hold || p.Until.Before(out.Until)):
			out = p
		}
		if p.Verdict == Pass {
			reasons = append(reasons, p.Reason)
		}
	}
	if out.Verdict == Pass {
		out.Reason = clip(reasons)
	}
	return out
}

// decideSignatures asks for a signature by one of s's signers on the image and, with
// platforms: all, on each of an index's platforms. A subject with no signature at all
// waits for one (signing usually follows the push) until the wait ends; a subject whose
// signatures all fail is blocked at once: a trusted signature pushed later re-decides it
// (its push event is a trigger).
func (g *Gate) decideSignatures(ctx context.Context, ev *evidence, s *rules.SignatureRequirement, now time.Time) (Decision, error) {
	until := ev.info.pushedAt.Add(time.Duration(s.Wait))
	subjects := []v1.Descriptor{ev.self}
	if s.Platforms == rules.PlatformsAll {
		subjects = append(subjects, ev.platforms...)
	}
	var missing, untrusted, signedBy []string
	for _, sub := range subjects {
		signer, failures, err := g.verify(ctx, ev, s.Signers, sub)
		if err != nil {
			return Decision{}, err
		}
		label := digestLabel(ev, sub.Digest.String())
		switch {
		case signer != "":
			signedBy = append(signedBy, signer+label)
		case len(failures) == 0:
			missing = append(missing, "no signature"+label)
		default:
			untrusted = append(untrusted, fmt.Sprintf("no signature verified%s: %s", label, clip(failures)))
		}
	}
	switch {
	case len(untrusted) > 0:
		return Decision{Verdict: Block, Code: CodeSignatureUntrusted, Reason: clip(untrusted), PushedAt: ev.info.pushedAt}, nil
	case len(missing) > 0 && now.Before(until):
		return Decision{Verdict: Hold, Code: CodeSignatureMissing, Reason: clip(missing), PushedAt: ev.info.pushedAt, Until: until}, nil
	case len(missing) > 0:
		return Decision{Verdict: Block, Code: CodeSignatureTimeout, PushedAt: ev.info.pushedAt,
			Reason: fmt.Sprintf("%s, %s after the push (signatures.wait)", clip(missing), time.Duration(s.Wait))}, nil
	}
	return Decision{Verdict: Pass, Reason: "signed by " + clip(signedBy), PushedAt: ev.info.pushedAt}, nil
}

// verify tries the subject's signatures against the signers: the first signer that
// verifies one, or why each signature failed (signatures that are not signatures of the
// image, attestations, are left out). An error is no verdict: a signer's key could not
// be had (KMS failed, a retry.Classified error), and the decision is to be made again.
func (g *Gate) verify(ctx context.Context, ev *evidence, signers []rules.Signer, subject v1.Descriptor) (string, []string, error) {
	var failures []string
	for _, sig := range ev.signatures[subject.Digest.String()] {
		var why []string
		attestation := false
		for i := range signers {
			sg := &signers[i]
			err := ev.verifyOnce(ctx, g.c.Verifiers, sig, sg, subject)
			var noVerdict retry.Classified
			switch {
			case err == nil:
				return sg.Name, nil, nil
			case errors.As(err, &noVerdict):
				return "", nil, err
			case errors.Is(err, ErrNotSignature):
				attestation = true
			case errors.Is(err, ErrOtherFormat):
			default:
				why = append(why, sg.Name+": "+err.Error())
			}
			if attestation {
				break
			}
		}
		switch {
		case attestation:
		case len(why) == 0:
			failures = append(failures, fmt.Sprintf("%s: a %s signature, which no trusted signer verifies", sig.Ref, sig.Format))
		default:
			failures = append(failures, sig.Ref+": "+clip(why))
		}
	}
	return "", failures, nil
}

// verifyOnce verifies sig with signer's verifier once per evidence: several requirements
// may share a signer.
func (ev *evidence) verifyOnce(ctx context.Context, vs Verifiers, sig *Signature, sg *rules.Signer, subject v1.Descriptor) error {
	k := verifyKey{sig: sig.Digest, signer: sg, subject: subject.Digest}
	ev.verifyMu.Lock()
	err, done := ev.verified[k]
	ev.verifyMu.Unlock()
	if done {
		return err
	}
	v := vs[sg]
	if v == nil {
		err = fmt.Errorf("signer %s has no verifier (the gate was built without it)", sg.Name)
	} else {
		err = v.Verify(ctx, sig, subject)
	}
	ev.verifyMu.Lock()
	ev.verified[k] = err
	ev.verifyMu.Unlock()
	return err
}
