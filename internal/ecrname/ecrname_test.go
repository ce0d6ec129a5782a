package ecrname

import (
	"errors"
	"strings"
	"testing"
)

var (
	hex64  = strings.Repeat("a1", 32)
	hex128 = strings.Repeat("0f", 64)
)

func TestValidators(t *testing.T) {
	type tc struct {
		in      string
		ok      bool
		wantMsg string // substring of the error, when !ok
	}
	cases := map[string]struct {
		fn    func(string) error
		cases []tc
	}{
		"Repository": {Repository, []tc{
			{"ab", true, ""},
			{"team-a/app", true, ""},
			{"a/b/c.d_e-f", true, ""},
			// ECR's current pattern (API_InitiateLayerUpload): '__' and runs of '-'.
			{"my__app", true, ""},
			{"team--app", true, ""},
			{"team---a/my__app", true, ""},
			{"a___b", false, "words joined by"}, // '_' or '__', never three
			{"a._b", false, "words joined by"},  // separators do not combine
			{"a..b", false, "words joined by"},
			{strings.Repeat("a", 256), true, ""},
			{strings.Repeat("a", 257), false, "2-256"},
			{"a", false, "2-256"},
			{"", false, "2-256"},
			{"Team/app", false, "[a-z0-9] words"},
			{"/team", false, "[a-z0-9] words"},
			{"team/", false, "[a-z0-9] words"},
			{"team//app", false, ""},
			{"team/-app", false, ""},
			{"team app", false, ""},
		}},
		"Tag": {Tag, []tc{
			{"latest", true, ""},
			{"v1.2.0", true, ""},
			{"_x", true, ""},
			{"sha256-" + hex64 + ".sig", true, ""},
			{strings.Repeat("a", 128), true, ""},
			{strings.Repeat("a", 129), true, ""}, // PutImage takes 300; the registry API 128
			{strings.Repeat("a", 300), true, ""},
			{strings.Repeat("a", 301), false, "not a valid image tag"},
			{"", false, ""},
			{".x", false, ""},
			{"-x", false, ""},
			{"a:b", false, ""},
		}},
		"Digest": {Digest, []tc{
			{"sha256:" + hex64, true, ""},
			{"sha512:" + hex128, true, ""},
			{"sha256:zz", false, `"sha256:zz" is not a valid digest`},
			{"sha256:" + strings.ToUpper(hex64), false, ""},
			{"sha512:" + hex64, false, ""},
			{"md5:" + hex64, false, ""},
			{hex64, false, ""},
		}},
		"AccountID": {AccountID, []tc{
			{"111111111111", true, ""},
			{"012345678901", true, ""},
			{"2222", false, `"2222" is not a 12-digit AWS account ID`},
			{"1111111111111", false, ""},
			{"11111111111a", false, ""},
		}},
		"Region": {Region, []tc{
			{"us-east-1", true, ""},
			{"us-gov-west-1", true, ""},
			{"cn-north-1", true, ""},
			{"eu-central-2", true, ""},
			{"ap-southeast-5", true, ""},
			{"eusc-de-east-1", true, ""},
			{"us-isob-east-1", true, ""},
			{"US-EAST-1", false, "region"},
			{"us-east", false, ""},
			{"useast1", false, ""},
			{"us-east-1.amazonaws.com", false, ""},
			{"", false, ""},
		}},
		"RoleARN": {RoleARN, []tc{
			{"arn:aws:iam::222222222222:role/ecr-replicator-destination", true, ""},
			{"arn:aws-cn:iam::222222222222:role/a", true, ""},
			{"arn:aws-us-gov:iam::222222222222:role/path/to/name", true, ""},
			{"arn:aws-eusc:iam::222222222222:role/x", true, ""},
			{"arn:aws-iso-f:iam::222222222222:role/x", true, ""},
			{"arn:aws:iam::222222222222:role/" + strings.Repeat("n", 64), true, ""},
			{"arn:aws:iam::222222222222:role/" + strings.Repeat("n", 65), false, ""},
			{"arn:aws:iam::222222222222:user/x", false, "IAM role ARN"},
			{"arn:aws:iam::2222:role/x", false, ""},
			{"arn:aws:sts::222222222222:assumed-role/x/y", false, ""},
			{"arn:gcp:iam::222222222222:role/x", false, ""},
			{"arn:aws:iam:us-east-1:222222222222:role/x", false, ""},
			{"arn:aws:iam::222222222222:role/", false, ""},
			{"arn:aws:iam::222222222222:role/a b", false, ""},
		}},
		"ExternalID": {ExternalID, []tc{
			{"ab", true, ""},
			{"abc-DEF_123+=,.@:/", true, ""},
			{strings.Repeat("x", 1224), true, ""},
			{strings.Repeat("x", 1225), false, "(value not shown) is not a valid STS external ID: 1225 character(s)"},
			{"a", false, "1 character(s)"},
			{"a b", false, "character 2 is a space"},
			{"secret\tid", false, "character 7 is whitespace (U+0009)"},
			{"sécret", false, "character 2 is a non-ASCII character (U+00E9)"},
			{"sec#ret", false, `character 4 is '#'`},
		}},
		"RepositoryPrefix": {RepositoryPrefix, []tc{
			{"", true, ""},
			{"mirror/", true, ""},
			{"mirror-", true, ""},
			{"org/mirror/", true, ""},
			{"/mirror", false, "start with '/'"},
			{"a/../", false, "'..'"},
			{"a//", false, "'//'"},
			{"Mirror/", false, "lowercase"},
			{"mirror", true, ""}, // "mirrorapp" — legal, if odd
			{"mirror_/", false, "prefix+name"},
			{"-x/", false, ""},
			{strings.Repeat("a", 256), false, "shorter than 256"},
		}},
	}
	for name, group := range cases {
		for _, c := range group.cases {
			err := group.fn(c.in)
			if c.ok && err != nil {
				t.Errorf("%s(%q) = %v, want nil", name, c.in, err)
			}
			if !c.ok {
				if err == nil {
					t.Errorf("%s(%q) = nil, want error", name, c.in)
					continue
				}
				if !errors.Is(err, ErrInvalid) {
					t.Errorf("%s(%q): error %v does not wrap ErrInvalid", name, c.in, err)
				}
				if !strings.Contains(err.Error(), c.wantMsg) {
					t.Errorf("%s(%q) = %q, want it to contain %q", name, c.in, err, c.wantMsg)
				}
			}
		}
	}
}

func TestRoleAccount(t *testing.T) {
	acct, err := RoleAccount("arn:aws:iam::222222222222:role/x")
	if err != nil || acct != "222222222222" {
		t.Fatalf("RoleAccount = %q, %v", acct, err)
	}
	if _, err := RoleAccount("nope"); err == nil {
		t.Fatal("want error")
	}
}

func TestQuoteTruncates(t *testing.T) {
	long := strings.Repeat("é", 100) // 2 bytes each: cut must land on a rune boundary
	q := Quote(long)
	if !strings.HasSuffix(q, "...") || len(q) > maxQuoted+10 || strings.Contains(q, `\x`) {
		t.Fatalf("Quote = %s", q)
	}
	if err := Repository(long); len(err.Error()) > 200 {
		t.Fatalf("error message not bounded: %d bytes", len(err.Error()))
	}
}

// FuzzRepositoryPrefix checks the property that matters for security: a
// valid prefix joined with a valid name never yields a name outside the
// prefix's namespace (it always starts with the prefix and is a valid name
// or is rejected by Repository, never silently rewritten).
func FuzzRepositoryPrefix(f *testing.F) {
	f.Add("mirror/", "team-a/app")
	f.Add("", "ab")
	f.Add("a-", "b")
	f.Fuzz(func(t *testing.T, prefix, name string) {
		if RepositoryPrefix(prefix) != nil || Repository(name) != nil {
			return
		}
		full := prefix + name
		if strings.HasPrefix(full, "/") || strings.Contains(full, "//") || strings.Contains(full, "..") {
			t.Fatalf("prefix %q + name %q = %q escapes", prefix, name, full)
		}
		// Every validator must not panic and must be deterministic.
		for _, fn := range []func(string) error{Repository, Tag, Digest, AccountID, Region, RoleARN, ExternalID} {
			_ = fn(full)
		}
	})
}

func FuzzValidators(f *testing.F) {
	f.Add("sha256:" + hex64)
	f.Add("arn:aws:iam::222222222222:role/x")
	f.Fuzz(func(t *testing.T, s string) {
		for _, fn := range []func(string) error{Repository, Tag, Digest, AccountID, Region, RoleARN, ExternalID, RepositoryPrefix} {
			if err := fn(s); err != nil {
				var e *Error
				if errors.As(err, &e) && e.Hidden {
					if e.Value != "" || !strings.HasPrefix(err.Error(), "(value not shown) ") {
						t.Fatalf("a hidden value kept or shown: %#v", e)
					}
					continue
				}
				if !errors.Is(err, ErrInvalid) || !strings.HasPrefix(err.Error(), `"`) {
					t.Fatalf("bad error shape: %v", err)
				}
			}
		}
	})
}
