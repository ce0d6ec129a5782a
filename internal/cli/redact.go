package cli

import (
	"context"
	"errors"
	"log/slog"
	"regexp"
	"strings"

	"github.com/aws/aws-sdk-go-v2/credentials/processcreds"
)

// detail is err's whole chain, for --debug, with what must never be printed taken out: a
// credential_process's output (the SDK's parse error quotes it whole — access key, secret
// key, session token) and anything shaped like an AWS key or token (redactSecrets).
func detail(err error) string {
	s := err.Error()
	walk(err, func(e error) {
		pe, ok := e.(*processcreds.ProviderError)
		if !ok || pe.Err == nil || !strings.HasPrefix(pe.Err.Error(), "parse failed of process output") {
			return
		}
		said := "parse failed of the credential process's output (not shown: it holds credentials)"
		if inner := errors.Unwrap(pe.Err); inner != nil {
			said += ", error: " + inner.Error()
		}
		s = strings.ReplaceAll(s, pe.Err.Error(), said)
	})
	return redactSecrets(s)
}

var (
	// secretFieldRE is a field that holds a secret, as JSON, an ini file or a query
	// string writes it: "SecretAccessKey": "…", aws_session_token = …, password=….
	secretFieldRE = regexp.MustCompile(`(?i)(\b(?:aws_)?(?:secret[_-]?access[_-]?key|session[_-]?token|security[_-]?token|access[_-]?key[_-]?id|password|token)"?\s*[:=]\s*"?)[^"\s,;&}]+`)
	// accessKeyRE is an AWS access key ID (long-term AKIA…, temporary ASIA…).
	accessKeyRE = regexp.MustCompile(`\b(AKIA|ASIA)[A-Z0-9]{16}\b`)
	// tokenLikeRE is a run of base64 long enough to be a secret key or a token (a
	// secret access key is 40 characters); redactSecrets masks those that mix upper and
	// lower case and digits, which digests (lowercase hex) and names do not.
	tokenLikeRE = regexp.MustCompile(`[A-Za-z0-9/+=]{40,}`)
)

// redactFields masks in s the values of fields that hold credentials, and access key IDs:
// what a one-line message could quote without ever meaning it.
func redactFields(s string) string {
	s = secretFieldRE.ReplaceAllString(s, "${1}<redacted>")
	return accessKeyRE.ReplaceAllString(s, "${1}<redacted>")
}

// redactSecrets masks in s what looks like a credential: redactFields, and long runs of
// mixed base64 (a tag of 40 such characters would be masked too: only debug output, for
// a bug report, goes through it).
func redactSecrets(s string) string {
	return tokenLikeRE.ReplaceAllStringFunc(redactFields(s), func(t string) string {
		if strings.ContainsAny(t, "ABCDEFGHIJKLMNOPQRSTUVWXYZ") && strings.ContainsAny(t, "abcdefghijklmnopqrstuvwxyz") && strings.ContainsAny(t, "0123456789") {
			return "<redacted>"
		}
		return t
	})
}

// redactingHandler is a slog handler that masks credentials in string and error
// attributes (the debug log carries the SDK's and the engine's errors).
type redactingHandler struct{ slog.Handler }

func (h redactingHandler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, redactSecrets(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(redactAttr(a))
		return true
	})
	return h.Handler.Handle(ctx, out)
}

func (h redactingHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	for i := range attrs {
		attrs[i] = redactAttr(attrs[i])
	}
	return redactingHandler{h.Handler.WithAttrs(attrs)}
}

func (h redactingHandler) WithGroup(name string) slog.Handler {
	return redactingHandler{h.Handler.WithGroup(name)}
}

func redactAttr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, redactSecrets(v.String()))
	case slog.KindAny:
		if err, ok := v.Any().(error); ok {
			return slog.String(a.Key, detail(err))
		}
	case slog.KindGroup:
		attrs := v.Group()
		out := make([]any, len(attrs))
		for i := range attrs {
			out[i] = redactAttr(attrs[i])
		}
		return slog.Group(a.Key, out...)
	}
	return a
}
