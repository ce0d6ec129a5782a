package sandbox_test

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ecr"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/ecr-replicator/ecr-replicator/internal/tooling/sandbox"
)

// TestAPIFaultForms: API faults select calls by region and resource, last until
// disarmed when persistent, reset the connection with or without applying the call, and
// fail single entries of an SQS batch as SQS reports its own failures.
func TestAPIFaultForms(t *testing.T) {
	e := start(t)
	t.Setenv("AWS_ENDPOINT_URL_SQS", e.sb.APIURL())
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	noRetry := func(o *ecr.Options) { o.Retryer = aws.NopRetryer{} }
	api := ecr.NewFromConfig(src, noRetry)
	for _, n := range []string{"team/a", "team/b"} {
		createRepo(t, e.ctx, src, n, "")
	}
	describe := func(repo string) error {
		_, err := api.DescribeImages(e.ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String(repo)})
		return err
	}

	t.Run("resource and persistence", func(t *testing.T) {
		f, err := e.sb.ArmAPIFault(sandbox.APIFault{Service: "ecr", Operation: "DescribeImages", Resource: "*:repository/team/b", Count: -1, Code: "AccessDeniedException"})
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			if err := describe("team/a"); err != nil {
				t.Fatalf("another repository is faulted: %v", err)
			}
			if err := describe("team/b"); errorCode(err) != "AccessDeniedException" {
				t.Fatalf("faulted repository answered %v", err)
			}
		}
		if f.Answered() != 3 {
			t.Errorf("answered %d, want 3", f.Answered())
		}
		f.Disarm()
		if err := describe("team/b"); err != nil {
			t.Fatalf("disarmed fault still answers: %v", err)
		}
	})

	t.Run("principal", func(t *testing.T) {
		if err := e.sb.InjectAPIFault(sandbox.APIFault{Service: "ecr", Principal: "*:user/" + sandbox.AdminUser, Code: "ServerException"}); err != nil {
			t.Fatal(err)
		}
		if err := describe("team/a"); err != nil {
			t.Fatalf("a fault for another principal answered: %v", err)
		}
		admin := ecr.NewFromConfig(e.userConfig(t, sandbox.SourceAccount, sandbox.AdminUser), noRetry)
		if _, err := admin.DescribeImages(e.ctx, &ecr.DescribeImagesInput{RepositoryName: aws.String("team/a")}); errorCode(err) != "ServerException" {
			t.Fatalf("the principal's call answered %v", err)
		}
	})

	t.Run("region", func(t *testing.T) {
		if err := e.sb.InjectAPIFault(sandbox.APIFault{Service: "ecr", Region: "eu-west-1", Code: "ServerException"}); err != nil {
			t.Fatal(err)
		}
		if err := describe("team/a"); err != nil {
			t.Fatalf("a fault of another region answered: %v", err)
		}
		e.sb.ClearFaults()
	})

	t.Run("reset", func(t *testing.T) {
		if err := e.sb.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "CreateRepository", Reset: true}); err != nil {
			t.Fatal(err)
		}
		_, err := api.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team/reset")})
		if err == nil || errorCode(err) != "" {
			t.Fatalf("reset call answered %v, want a connection error", err)
		}
		if err := describe("team/reset"); errorCode(err) != "RepositoryNotFoundException" {
			t.Fatalf("a reset call was applied: %v", err)
		}
	})

	t.Run("lost answer", func(t *testing.T) {
		if err := e.sb.InjectAPIFault(sandbox.APIFault{Service: "ecr", Operation: "CreateRepository", Reset: true, LostAnswer: true}); err != nil {
			t.Fatal(err)
		}
		if _, err := api.CreateRepository(e.ctx, &ecr.CreateRepositoryInput{RepositoryName: aws.String("team/lost")}); err == nil {
			t.Fatal("a lost answer arrived")
		}
		if err := describe("team/lost"); err != nil {
			t.Fatalf("the call whose answer was lost was not applied: %v", err)
		}
	})

	t.Run("batch entries", func(t *testing.T) {
		q := sqs.NewFromConfig(src)
		out, err := q.CreateQueue(e.ctx, &sqs.CreateQueueInput{QueueName: aws.String("work")})
		if err != nil {
			t.Fatal(err)
		}
		url := out.QueueUrl
		if err := e.sb.InjectAPIFault(sandbox.APIFault{Service: "sqs", Resource: "*:work", Entries: 2}); err != nil {
			t.Fatal(err)
		}
		if err := e.sb.InjectAPIFault(sandbox.APIFault{Service: "sqs", Resource: "*:work", Entries: 1, SenderFault: true, Code: "InvalidParameterValue"}); err != nil {
			t.Fatal(err)
		}
		var entries []sqstypes.SendMessageBatchRequestEntry
		for i := range 5 {
			entries = append(entries, sqstypes.SendMessageBatchRequestEntry{Id: aws.String(fmt.Sprint(i)), MessageBody: aws.String(fmt.Sprint(i))})
		}
		var failed []string
		for range 2 {
			res, err := q.SendMessageBatch(e.ctx, &sqs.SendMessageBatchInput{QueueUrl: url, Entries: entries})
			if err != nil {
				t.Fatal(err)
			}
			for _, f := range res.Failed {
				failed = append(failed, fmt.Sprintf("%s:%s:%v", aws.ToString(f.Id), aws.ToString(f.Code), f.SenderFault))
			}
		}
		sort.Strings(failed)
		if got := strings.Join(failed, " "); got != "3:InternalError:false 4:InternalError:false 4:InvalidParameterValue:true" {
			t.Errorf("failed entries %s", got)
		}
		msgs, err := e.sb.QueueMessages(sandbox.SourceAccount, sandbox.DefaultRegion, "work")
		if err != nil || len(msgs) != 7 {
			t.Errorf("%d messages queued (want 3 + 4), %v", len(msgs), err)
		}
	})
}

// TestRepositoryListingOrder: DescribeRepositories lists in no name order (ECR documents
// none), the same order on every call, and its pages together hold every repository once.
func TestRepositoryListingOrder(t *testing.T) {
	e := start(t)
	src := e.userConfig(t, sandbox.SourceAccount, sandbox.SourceUser)
	var want []string
	for i := range 30 {
		n := fmt.Sprintf("order/r%02d", i)
		createRepo(t, e.ctx, src, n, "")
		want = append(want, n)
	}
	list := func() []string {
		var names []string
		p := ecr.NewDescribeRepositoriesPaginator(ecr.NewFromConfig(src), &ecr.DescribeRepositoriesInput{MaxResults: aws.Int32(7)})
		for p.HasMorePages() {
			out, err := p.NextPage(e.ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range out.Repositories {
				names = append(names, aws.ToString(r.RepositoryName))
			}
		}
		return names
	}
	first := list()
	if sort.StringsAreSorted(first) {
		t.Errorf("listed in name order: %v", first)
	}
	if fmt.Sprint(first) != fmt.Sprint(list()) {
		t.Errorf("two listings differ")
	}
	got := append([]string(nil), first...)
	sort.Strings(got)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("listed %v, want %v", got, want)
	}
}
