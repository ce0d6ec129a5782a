package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/aws/smithy-go"

	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/retry"
)

// problem is a failure explained for a person: one line saying what went wrong and what
// to do about it, the exit code, and the error it came from (printed with --debug).
// Everything a command returns as an error ends up as one.
type problem struct {
	code  string // the AWS or registry error code, or one of the code* constants
	msg   string
	exit  int
	op    string // the AWS operation or engine step that failed, when known
	err   error
	extra map[string]any // more JSON fields (interrupted: done, left)
}

func (p *problem) Error() string { return p.msg }
func (p *problem) Unwrap() error { return p.err }

// Codes of failures that carry no AWS or registry code.
const (
	codeUsage         = "USAGE"          // the command line
	codeConfig        = "CONFIG"         // the rules document, an AWS profile
	codeNoCredentials = "NO_CREDENTIALS" // no AWS credentials anywhere the SDK looks
	codeInterrupted   = "INTERRUPTED"    // Ctrl-C
)

func (p *problem) jsonObject(debug bool) map[string]any {
	o := map[string]any{"code": p.code, "message": p.msg, "exitCode": p.exit}
	if p.op != "" {
		o["operation"] = p.op
	}
	for k, v := range p.extra {
		o[k] = v
	}
	if debug && p.err != nil {
		o["detail"] = detail(p.err)
	}
	return o
}

func usageProblem(msg string) *problem {
	return &problem{code: codeUsage, msg: msg, exit: ExitUsage}
}

func usagef(format string, args ...any) error {
	return usageProblem(fmt.Sprintf(format, args...))
}

func configProblem(err error, format string, args ...any) *problem {
	return &problem{code: codeConfig, msg: fmt.Sprintf(format, args...), exit: ExitUsage, err: err}
}

// interrupted is the one line printed for Ctrl-C.
func interrupted(done, left int) *problem {
	return &problem{
		code:  codeInterrupted,
		msg:   fmt.Sprintf("interrupted: %d done, %d left, rerun to resume", done, left),
		exit:  ExitInterrupted,
		extra: map[string]any{"done": done, "left": left},
	}
}

// explain turns any error a command returned into a problem.
func explain(ctx context.Context, err error) *problem {
	var p *problem
	if errors.As(err, &p) {
		return p
	}
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return &problem{code: codeInterrupted, msg: "interrupted before anything was copied", exit: ExitInterrupted, err: err}
	}
	if isCobraUsage(err) {
		return usageProblem(err.Error())
	}
	return awsProblem(err, "")
}

// Error codes AWS answers when credentials are no longer valid or not valid at all.
// https://docs.aws.amazon.com/STS/latest/APIReference/CommonErrors.html
var (
	expiredCodes = map[string]bool{"ExpiredToken": true, "ExpiredTokenException": true, "RequestExpired": true}
	badKeyCodes  = map[string]bool{"InvalidClientTokenId": true, "UnrecognizedClientException": true, "SignatureDoesNotMatch": true,
		"InvalidSignatureException": true, "IncompleteSignature": true, "MissingAuthenticationToken": true}
	deniedCodes = map[string]bool{"AccessDenied": true, "AccessDeniedException": true, "UnauthorizedOperation": true}
)

// awsProblem explains an error from an AWS API call (an ecraccess error, or the SDK's).
// what names the thing acted on, for messages where the operation alone is unclear.
func awsProblem(err error, what string) *problem {
	code := apiCode(err)
	if code == "" {
		code, _ = retry.Classify(err)
	}
	op := awsOperation(err)
	text := apiMessage(err)
	p := &problem{code: code, op: op, err: err, exit: ExitFailed}
	subject := what
	if subject == "" {
		subject = op
	}
	switch {
	case expiredCodes[code] && strings.HasPrefix(op, "registry "):
		// ecraccess: the registry refused a token again after it was renewed.
		p.msg = fmt.Sprintf("the registry kept refusing its token (%s in %s) after a new one was issued: rerun", code, op)
	case expiredCodes[code]:
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("the AWS credentials have expired (%s in %s): get fresh ones (for example `aws sso login`, or a new session token) and rerun", code, op)
	case badKeyCodes[code]:
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("AWS did not accept the credentials (%s in %s): the access key is unknown or its secret does not match; check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or --profile", code, op)
	case deniedCodes[code] && op == "sts:AssumeRole":
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("cannot assume the role (AccessDenied): %s; check the role's trust policy and the external ID", text)
	case deniedCodes[code]:
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("%s was denied (%s): %s", op, code, text)
	case code == "RepositoryNotFoundException":
		p.exit = ExitUsage
		p.msg = fmt.Sprintf("%s: repository not found (%s): %s", subject, code, text)
	case code == "MissingRegion":
		p.exit = ExitUsage
		p.msg = "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or pass --region"
	case code == retry.CodeCanceled:
		p.code, p.exit = codeInterrupted, ExitInterrupted
		p.msg = "interrupted before anything was copied"
	case subject == "" && code == "":
		p.msg = text
	case subject == "":
		// An error that is its own explanation (RepositoryNotOwned, …): no operation failed.
		p.msg = fmt.Sprintf("%s (%s)", text, code)
	case code == "":
		p.msg = fmt.Sprintf("%s failed: %s", subject, text)
	default:
		p.msg = fmt.Sprintf("%s failed (%s): %s", subject, code, text)
	}
	return p
}

// walk calls fn on err and everything it wraps, depth first, outermost first.
func walk(err error, fn func(error)) {
	var visit func(error, int)
	visit = func(e error, depth int) {
		if e == nil || depth > 64 {
			return
		}
		fn(e)
		switch x := e.(type) {
		case interface{ Unwrap() []error }:
			for _, inner := range x.Unwrap() {
				visit(inner, depth+1)
			}
		case interface{ Unwrap() error }:
			visit(x.Unwrap(), depth+1)
		}
	}
	visit(err, 0)
}

// apiCode is the code of the innermost AWS API error: AssumeRole's AccessDenied inside
// the ECR call that needed the role's credentials, not the ECR call's.
func apiCode(err error) string {
	code := ""
	walk(err, func(e error) {
		if ae, ok := e.(smithy.APIError); ok {
			code = ae.ErrorCode()
		}
	})
	return code
}

// apiMessage is what AWS said (the innermost API error's message, which names the
// action and resource), or the innermost error's text for a failure with no AWS answer.
func apiMessage(err error) string {
	msg, leaf := "", ""
	walk(err, func(e error) {
		if ae, ok := e.(smithy.APIError); ok && ae.ErrorMessage() != "" {
			msg = ae.ErrorMessage()
		}
		leaf = e.Error()
	})
	if msg == "" {
		msg = leaf
	}
	return strings.TrimSpace(msg)
}

// awsOperation is the innermost AWS operation in err as an IAM action
// ("sts:AssumeRole", "ecr:DescribeImages"), or the step an ecraccess error names.
func awsOperation(err error) string {
	op := ""
	walk(err, func(e error) {
		switch x := e.(type) {
		case *smithy.OperationError:
			op = strings.ToLower(x.ServiceID) + ":" + x.OperationName
		case *ecraccess.Error:
			if op == "" {
				op = x.Op
			}
		}
	})
	return op
}

// copyFailure is one image that failed, with what is needed to explain it.
type copyFailure struct {
	err         error
	source      string // repository as the user named it
	destination string
	tag, digest string
	destECR     bool
}

// explainCopy is the one line said about a failed image.
func explainCopy(f copyFailure) (code, msg string) {
	var ae *ecraccess.Error
	var re *destinations.CopyError
	if !errors.As(f.err, &re) || (errors.As(f.err, &ae) && re.Code == ae.ErrorCode()) {
		// A failure of the AWS side of the copy (a role, a token, a repository call).
		p := awsProblem(f.err, "")
		return p.code, p.msg
	}
	code = re.Code
	src := !re.AtDest // a registry code comes from one side or the other
	if host, ok := unresolvable(f.err); ok {
		return code, unresolvableMessage(host)
	}
	if msg := explainCode(f, code, src); msg != "" {
		return code, msg
	}
	if code == "" {
		return code, fmt.Sprintf("%s failed: %s", re.Op, apiMessage(f.err))
	}
	return code, fmt.Sprintf("%s failed (%s): %s", re.Op, code, apiMessage(f.err))
}

// explainCode is what a registry's error code means for a copy, said of the side that
// answered it (src: the source); "" when the code needs no more than the generic line.
func explainCode(f copyFailure, code string, src bool) string {
	ref := f.source
	switch {
	case f.tag != "":
		ref += ":" + f.tag
	case f.digest != "":
		ref += "@" + f.digest
	}
	switch code {
	case "MANIFEST_UNKNOWN", "NOT_FOUND":
		if src && f.tag != "" && f.digest == "" {
			// The tag never resolved to a digest.
			return fmt.Sprintf("tag %s not found in %s (%s)", f.tag, f.source, code)
		}
		if src {
			return fmt.Sprintf("%s not found in %s (%s): the image was deleted, or an index refers to a manifest the repository lacks", shortDigest(f.digest), f.source, code)
		}
	case "NAME_UNKNOWN":
		switch {
		case src:
			return fmt.Sprintf("repository %s not found (%s): check the name (repository names are lowercase)", f.source, code)
		case f.destECR:
			return fmt.Sprintf("repository %s disappeared during the copy (%s): rerun to create it again", f.destination, code)
		default:
			return fmt.Sprintf("repository %s does not exist (%s): create it there first; ecr-replicator creates repositories only on ECR registries", f.destination, code)
		}
	case "DENIED", "UNAUTHORIZED":
		if src {
			return fmt.Sprintf("%s refused to let this identity pull %s (%s): on ECR it needs ecr:BatchGetImage and ecr:GetDownloadUrlForLayer; elsewhere log in first (docker login)", registryOf(f.source), ref, code)
		}
		return fmt.Sprintf("%s refused to let this identity push to %s (%s): on ECR it needs ecr:BatchCheckLayerAvailability, ecr:InitiateLayerUpload, ecr:UploadLayerPart, ecr:CompleteLayerUpload and ecr:PutImage; elsewhere log in first (docker login)", registryOf(f.destination), f.destination, code)
	case "TAG_INVALID":
		return fmt.Sprintf("%s refused tag %s (%s): the repository's tags are immutable and the tag already points at another image", f.destination, f.tag, code)
	case "TOOMANYREQUESTS":
		return fmt.Sprintf("throttled by %s (%s) after retries: rerun later (it resumes), or lower --concurrency", registryOf(sideRepo(src, f)), code)
	case "UNAVAILABLE", retry.CodeEOF, retry.CodeConnReset, retry.CodeTimeout, retry.CodeNetwork, retry.CodeDeadlineExceeded:
		return fmt.Sprintf("%s did not answer (%s) after retries: rerun to resume", registryOf(sideRepo(src, f)), code)
	case retry.CodeTLS:
		return fmt.Sprintf("TLS with %s failed (%s): %s", registryOf(sideRepo(src, f)), code, apiMessage(f.err))
	case destinations.CodeDigestMismatch:
		return fmt.Sprintf("%s served another digest than the one written (%s): rerun; report it if it persists", f.destination, code)
	case destinations.CodeInvalid:
		return fmt.Sprintf("invalid request (%s): %s", code, apiMessage(f.err))
	}
	return ""
}

func sideRepo(src bool, f copyFailure) string {
	if src {
		return f.source
	}
	return f.destination
}

// registryOf is the registry host of a repository name.
func registryOf(repo string) string {
	host, _, _ := strings.Cut(repo, "/")
	return host
}

// unresolvable reports whether err is a DNS answer that the host does not exist
// (NXDOMAIN): not transient (retry.Classify agrees), so "rerun" would be the wrong advice.
func unresolvable(err error) (string, bool) {
	var dns *net.DNSError
	if errors.As(err, &dns) && dns.IsNotFound {
		return dns.Name, true
	}
	return "", false
}

func unresolvableMessage(host string) string {
	return fmt.Sprintf("registry host %s does not resolve (DNS: no such host): check the host name (or the DNS or VPN it needs)", host)
}
