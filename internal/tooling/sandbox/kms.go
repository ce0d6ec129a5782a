package sandbox

import (
	"fmt"
	"strings"
	"sync"
)

// AWS KMS, as much of it as verifying a signature needs: the public key of an
// asymmetric signing key (GetPublicKey, AWS JSON 1.1, X-Amz-Target
// TrentService.GetPublicKey). Keys are registered by tests and the demo with
// PutKMSPublicKey (their private halves stay with whoever signs); the sandbox never
// signs. https://docs.aws.amazon.com/kms/latest/APIReference/API_GetPublicKey.html
//
// Simplifications: a key is reached from its own account only (no key policies, no
// grants: cross-account use is refused with AccessDeniedException, a guess at what a
// key policy that does not name the caller gives); aliases are not emulated.

type kmsKey struct {
	arn, spec string
	der       []byte
}

type kmsState struct {
	mu   sync.Mutex
	keys map[string]*kmsKey // by ARN
}

// PutKMSPublicKey registers the public key (DER SubjectPublicKeyInfo) of an asymmetric
// signing key with id keyID in an account and region, of key spec spec
// (ECC_NIST_P256, RSA_2048, …), and returns its ARN.
func (s *Sandbox) PutKMSPublicKey(account, region, keyID, spec string, der []byte) string {
	arn := fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", region, account, keyID)
	s.kms.mu.Lock()
	defer s.kms.mu.Unlock()
	if s.kms.keys == nil {
		s.kms.keys = map[string]*kmsKey{}
	}
	s.kms.keys[arn] = &kmsKey{arn: arn, spec: spec, der: append([]byte(nil), der...)}
	return arn
}

// kmsKeyARN is the ARN a GetPublicKey KeyId names (an ARN, or a key ID of the caller's
// account and region).
func kmsKeyARN(c *caller, keyID string) string {
	if strings.HasPrefix(keyID, "arn:") {
		return keyID
	}
	return fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", c.region, c.cred.account, keyID)
}

func (s *Sandbox) kmsCall(c *caller, op string, body []byte, entry *Entry) (any, *apiError) {
	var in struct {
		KeyID string `json:"KeyId"`
	}
	if err := decodeInput(body, &in); err != nil {
		return nil, err
	}
	if op != "GetPublicKey" {
		return nil, errorf(400, "UnknownOperationException", "the sandbox does not emulate kms:%s", op)
	}
	if in.KeyID == "" {
		return nil, errorf(400, "ValidationException", "1 validation error detected: Value null at 'keyId' failed to satisfy constraint: Member must not be null")
	}
	arn := kmsKeyARN(c, in.KeyID)
	entry.Account, entry.Reference = c.cred.account, arn
	// KMS keys are regional: a key lives in the Region of its ARN and is reached at that
	// Region's endpoint only (multi-Region keys are related keys, one ARN per Region:
	// https://docs.aws.amazon.com/kms/latest/developerguide/multi-region-keys-overview.html).
	// Asked elsewhere, AWS answers NotFoundException "Invalid arn <region>" (the answer
	// quoted in pulumi/pulumi#17022 and kubernetes-retired/kube-aws#1041); that this is
	// checked before the account is a guess.
	if parts := strings.Split(arn, ":"); len(parts) > 3 && parts[3] != c.region {
		return nil, errorf(400, "NotFoundException", "Invalid arn %s", parts[3])
	}
	if parts := strings.Split(arn, ":"); len(parts) < 5 || parts[4] != c.cred.account {
		return nil, errorf(400, "AccessDeniedException", "User: %s is not authorized to perform: kms:GetPublicKey on resource: %s (the sandbox has no key policies: keys are reached from their own account)", c.cred.principalARN, arn)
	}
	s.kms.mu.Lock()
	k := s.kms.keys[arn]
	s.kms.mu.Unlock()
	if k == nil {
		return nil, errorf(400, "NotFoundException", "Key '%s' does not exist", arn)
	}
	return map[string]any{
		"KeyId": k.arn, "PublicKey": k.der, "KeySpec": k.spec, "CustomerMasterKeySpec": k.spec,
		"KeyUsage": "SIGN_VERIFY", "SigningAlgorithms": signingAlgorithms(k.spec),
	}, nil
}

// signingAlgorithms are the algorithms of a key spec (API_GetPublicKey, SigningAlgorithms).
func signingAlgorithms(spec string) []string {
	switch {
	case spec == "ECC_NIST_P256":
		return []string{"ECDSA_SHA_256"}
	case spec == "ECC_NIST_P384":
		return []string{"ECDSA_SHA_384"}
	case strings.HasPrefix(spec, "RSA_"):
		return []string{"RSASSA_PSS_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256"}
	}
	return nil
}
