package ecraccess

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"

	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// How long an answer about BLOB_MOUNTING is kept. The setting rarely changes: a warm
// process sees a change within mountingTTL. A permanent failure to read it (a destination
// role that does not grant ecr:GetAccountSetting yet: AccessDenied) is asked again after
// mountingRetry. A passing one (a throttle, a 5xx, a timeout) is not kept: the next copy
// asks again. One call at a time per registry bounds how often that is — each call
// already spends the SDK's retries and their backoff.
const (
	mountingTTL   = 15 * time.Minute
	mountingRetry = 5 * time.Minute
	// mountingCallTimeout bounds one GetAccountSetting with the SDK's retries; the call
	// runs apart from the copy that started it, so that its answer is kept even when that
	// copy stops waiting.
	mountingCallTimeout = 30 * time.Second
	// mountingJoinWait is how long a copy waits for the answer of a call another copy
	// started, when nothing is known yet. An answer normally takes tens of milliseconds;
	// a throttled call takes the SDK's retries (seconds): the copy then goes on without
	// mounting rather than wait for it. (A guess at the balance, not an AWS figure.)
	mountingJoinWait = time.Second
)

// CodeSettingUnreadable: a registry's account setting cannot be read with the identity it
// is reached with (another account's registry, reached without a role: GetAccountSetting
// answers for the caller's own account).
const CodeSettingUnreadable = "AccountSettingUnreadable"

// blobMounting is a registry's BLOB_MOUNTING setting as last asked.
type blobMounting struct {
	mu   sync.Mutex // never held across a call
	kept *settingAnswer
	call *settingCall // the GetAccountSetting in flight, if any
}

// settingAnswer is ENABLED or not, or a failure to read the setting.
type settingAnswer struct {
	at  time.Time
	on  bool
	err error
}

// fresh: the answer still stands without asking again.
func (a *settingAnswer) fresh(now time.Time) bool {
	if a.err != nil {
		return now.Sub(a.at) < mountingRetry
	}
	return now.Sub(a.at) < mountingTTL
}

type settingCall struct {
	done   chan struct{} // closed when answer is set
	answer settingAnswer
}

// BlobMounting reports whether the registry mounts blobs across its repositories: ECR's
// BLOB_MOUNTING account setting is ENABLED ("Blob mounting in Amazon ECR",
// https://docs.aws.amazon.com/AmazonECR/latest/userguide/blob-mounting.html;
// API_GetAccountSetting). GetAccountSetting answers for the caller's own account, so
// another account's registry reached without a role is reported off with an error
// (CodeSettingUnreadable): the setting is unknown. A failure is returned with false:
// without the setting, a copy uploads every blob, as it would with mounting off.
//
// An answer kept past its time is returned as is while one call asks again in the
// background; only a caller that knows nothing waits, at most mountingJoinWait (the one
// whose call it is too): a copy goes on without mounting rather than wait.
func (g *Client) BlobMounting(ctx context.Context) (bool, error) {
	return g.blobMounting(ctx, mountingJoinWait)
}

// AwaitBlobMounting is BlobMounting for a caller in no hurry (a plan, a dry run): it waits
// for the call until it ends (mountingCallTimeout) or ctx does, so a slow answer is not
// reported as a setting that cannot be read.
func (g *Client) AwaitBlobMounting(ctx context.Context) (bool, error) {
	return g.blobMounting(ctx, 0)
}

// blobMounting waits at most wait for an answer not yet known (0: until the call ends).
func (g *Client) blobMounting(ctx context.Context, wait time.Duration) (bool, error) {
	if g.foreign {
		return false, &Error{Op: "ecr:GetAccountSetting", Code: CodeSettingUnreadable,
			Err: errors.New("another account's registry, reached without a role: its BLOB_MOUNTING setting cannot be read (GetAccountSetting answers for the caller's own account)")}
	}
	m := &g.mounting
	m.mu.Lock()
	kept := m.kept
	if kept != nil && kept.fresh(time.Now()) {
		m.mu.Unlock()
		return kept.on, kept.err
	}
	c := m.call
	if c == nil {
		c = &settingCall{done: make(chan struct{})}
		m.call = c
		go g.askBlobMounting(context.WithoutCancel(ctx), c)
	}
	m.mu.Unlock()
	if kept != nil {
		return kept.on, kept.err // stale: asked again in the background
	}
	// Whoever started the call waits no longer than the others: a stalled or throttled
	// call must not hold a copy (the call goes on, its answer is kept for the next).
	var timeout <-chan time.Time
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-c.done:
		return c.answer.on, c.answer.err
	case <-ctx.Done():
		return false, ctx.Err()
	case <-timeout:
		return false, &Error{Op: "ecr:GetAccountSetting", Err: fmt.Errorf("no answer about BLOB_MOUNTING within %s: %w", wait, context.DeadlineExceeded)}
	}
}

// askBlobMounting makes call c and keeps its answer unless the failure may pass.
func (g *Client) askBlobMounting(ctx context.Context, c *settingCall) {
	ctx, cancel := context.WithTimeout(ctx, mountingCallTimeout)
	defer cancel()
	out, err := g.api.GetAccountSetting(ctx, &ecr.GetAccountSettingInput{Name: aws.String("BLOB_MOUNTING")})
	a := settingAnswer{at: time.Now()}
	if err != nil {
		a.err = WrapAWS("ecr:GetAccountSetting", err)
	} else {
		a.on = aws.ToString(out.Value) == "ENABLED"
	}
	_, passing := retry.Classify(a.err)
	m := &g.mounting
	m.mu.Lock()
	if a.err == nil || !passing {
		m.kept = &a
	}
	m.call = nil
	m.mu.Unlock()
	c.answer = a
	close(c.done)
	switch {
	case a.err == nil:
	case passing:
		g.resolver.log.Info("the registry's blob mounting setting could not be read this time: copies upload until it is; asked again on the next copy",
			"account", g.access.AccountID, "region", g.access.Region, "error", a.err.Error())
	default:
		g.resolver.log.Warn("the registry's blob mounting setting could not be read: every blob is uploaded",
			"account", g.access.AccountID, "region", g.access.Region, "error", a.err.Error())
	}
}
