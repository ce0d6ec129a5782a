package ecraccess

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
)

// How long an answer about BLOB_MOUNTING is kept: the setting rarely changes (a warm
// process sees a change within mountingTTL), and a failure to read it (a destination role
// that does not grant ecr:GetAccountSetting yet) is asked again after mountingRetry.
const (
	mountingTTL   = 15 * time.Minute
	mountingRetry = 5 * time.Minute
)

// blobMounting is a registry's BLOB_MOUNTING setting as last asked.
type blobMounting struct {
	mu    sync.Mutex // held across GetAccountSetting: one call at a time
	asked time.Time
	on    bool
	err   error
}

// BlobMounting reports whether the registry mounts blobs across its repositories: ECR's
// BLOB_MOUNTING account setting is ENABLED ("Blob mounting in Amazon ECR",
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html;
// API_GetAccountSetting). GetAccountSetting answers for the caller's own account, so
// another account's registry reached without a role is reported off. A failure is
// returned (and logged once per retry period) with false: without the setting, a copy
// uploads every blob, as it would with mounting off.
func (g *Registry) BlobMounting(ctx context.Context) (bool, error) {
	if g.foreign {
		return false, nil
	}
	m := &g.mounting
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.asked.IsZero() && time.Since(m.asked) < mountingTTL && (m.err == nil || time.Since(m.asked) < mountingRetry) {
		return m.on, m.err
	}
	out, err := g.api.GetAccountSetting(ctx, &ecr.GetAccountSettingInput{Name: aws.String("BLOB_MOUNTING")})
	if ctx.Err() != nil {
		return false, ctx.Err() // not an answer: not kept
	}
	m.asked, m.on, m.err = time.Now(), false, nil
	if err != nil {
		m.err = WrapAWS("ecr:GetAccountSetting", err)
		g.resolver.log.Warn("the registry's blob mounting setting could not be read: every blob is uploaded",
			"account", g.access.AccountID, "region", g.access.Region, "error", m.err.Error())
		return false, m.err
	}
	m.on = aws.ToString(out.Value) == "ENABLED"
	return m.on, nil
}
