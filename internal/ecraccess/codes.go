package ecraccess

import "strings"

// AWS error codes the project branches on. Compare codes with these (or the functions
// below), never with string literals spread across packages. Sources: the "Errors"
// section of each ECR API action (e.g. API_DescribeImages), the STS and SQS common
// errors.
const (
	CodeRepositoryNotFound      = "RepositoryNotFoundException"
	CodeRepositoryAlreadyExists = "RepositoryAlreadyExistsException"
	CodeInvalidParameter        = "InvalidParameterException"
	// CodeAccessDenied is STS's and SQS's denial; ECR answers CodeAccessDeniedException.
	CodeAccessDenied          = "AccessDenied"
	CodeAccessDeniedException = "AccessDeniedException"
	CodeThrottling            = "ThrottlingException"
	// DescribeImages' and DescribeImageScanFindings' answers for an image or scan that
	// does not exist (API_DescribeImageScanFindings, "Errors").
	CodeImageNotFound = "ImageNotFoundException"
	CodeScanNotFound  = "ScanNotFoundException"
)

// IsAccessDenied reports whether an AWS error code is an IAM denial, whichever service
// answered it.
func IsAccessDenied(code string) bool {
	return code == CodeAccessDenied || code == CodeAccessDeniedException || strings.HasPrefix(code, "AccessDenied") ||
		code == "UnauthorizedOperation"
}
