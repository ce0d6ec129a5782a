package ecraccess

import "testing"

func TestParseRegistryHost(t *testing.T) {
	for _, tc := range []struct {
		host, account, region string
		ok                    bool
	}{
		{"111111111111.dkr.ecr.us-east-1.amazonaws.com", "111111111111", "us-east-1", true},
		{"111111111111.dkr.ecr.cn-north-1.amazonaws.com.cn", "111111111111", "cn-north-1", true},
		{"111111111111.dkr.ecr-fips.us-gov-west-1.amazonaws.com", "111111111111", "us-gov-west-1", true},
		{"111111111111.dkr-ecr.eu-west-1.on.aws", "111111111111", "eu-west-1", true},
		{"public.ecr.aws", "", "", false},
		{"11111111111.dkr.ecr.us-east-1.amazonaws.com", "", "", false},
		{"111111111111.dkr.ecr.us-east-1.amazonaws.com.evil.example", "", "", false},
		{"127.0.0.1:5000", "", "", false},
	} {
		a, r, ok := ParseRegistryHost(tc.host)
		if a != tc.account || r != tc.region || ok != tc.ok {
			t.Errorf("%s: %s %s %v", tc.host, a, r, ok)
		}
	}
}
