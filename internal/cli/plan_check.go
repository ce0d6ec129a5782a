package cli

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/ecr-replicator/ecr-replicator/internal/backfill"
	"github.com/ecr-replicator/ecr-replicator/internal/destinations"
	"github.com/ecr-replicator/ecr-replicator/internal/ecraccess"
	"github.com/ecr-replicator/ecr-replicator/internal/ecrname"
)

// dryRun reports a plan (plan, sync --dry-run) with what the listings alone do not say:
// the copies that cannot be made (blockedCopies), and the platforms the indexes to copy
// upload (planIndexes).
func (r *syncReport) dryRun(ctx context.Context, sess *awsSession, log *slog.Logger, plan *backfill.Response, dests []*destinationStatus,
	indexes *indexListings, since time.Time) error {
	keep, blocked := blockedCopies(ctx, sess, log, plan.Work)
	src := ecraccess.SourceAccess(r.source, r.doc.SourceRoleARN())
	uploads := planIndexes(ctx, r.a, log, sess, src, r.doc, since, indexes, keep)
	if ctx.Err() != nil {
		return interruptedPlanning()
	}
	return r.plan(withoutBlocked(plan, keep, blocked), dests, blocked, uploads)
}

// blockedCopy is a copy a plan found to make that cannot be made as things stand,
// whatever is rerun: it is an error in the plan, not drift to apply.
type blockedCopy struct {
	work        backfill.Work
	state, code string // stateConflict or stateFailed, and the code the copy would end with
	msg         string
}

// blockedCopies separates, among a plan's copies to make, those that would fail: into an
// existing destination repository the replicator does not own (RepositoryNotOwned, as
// sync would be refused), a tag an immutable destination repository has on another image
// (the copy ends in conflict), and a missing repository its rule does not create
// (createRepository: false). Each existing destination repository with copies to make is
// read once (ecr:DescribeRepositories, ecr:ListTagsForResource); one that cannot be read
// is left to the copy.
func blockedCopies(ctx context.Context, sess *awsSession, log *slog.Logger, work []backfill.Work) (keep []backfill.Work, blocked []blockedCopy) {
	owner, err := sess.resolver.CallerAccount(ctx)
	if err != nil {
		log.Debug("ownership not checked", "error", err.Error())
	}
	repos := map[ecrname.Repo]destinationRepo{}
	for _, w := range work {
		dest := w.Target.Destination
		if w.Reason == backfill.ReasonRepositoryMissing {
			if !dest.CreateRepository {
				blocked = append(blocked, blockedCopy{work: w, state: stateFailed, code: "RepositoryNotFoundException",
					msg: fmt.Sprintf("repository %s does not exist, and rule %q does not create it (createRepository: false): create it, or set createRepository: true", w.Target.Repository, w.Target.Rule)})
				continue
			}
			keep = append(keep, w)
			continue
		}
		d, ok := repos[w.Target.Repo()]
		if !ok {
			d = readDestinationRepo(ctx, sess, log, w, owner)
			repos[w.Target.Repo()] = d
		}
		switch {
		case d.notOwned != nil:
			blocked = append(blocked, blockedCopy{work: w, state: stateFailed, code: destinations.CodeRepositoryNotOwned, msg: d.notOwned.Error()})
		case w.Reason == backfill.ReasonTagElsewhere && d.mutability != nil && d.mutability.TagImmutable(w.Tag):
			blocked = append(blocked, blockedCopy{work: w, state: stateConflict, code: immutableCode, msg: immutableMessage(w.Tag, "")})
		default:
			keep = append(keep, w)
		}
	}
	sort.SliceStable(blocked, func(i, j int) bool { return blocked[i].result().ref() < blocked[j].result().ref() })
	return keep, blocked
}

// destinationRepo is what a plan read of an existing destination repository: whether the
// replicator may write to it, and which tags it keeps (nil: not read).
type destinationRepo struct {
	notOwned   error
	mutability *ecraccess.Repository // its tag mutability (TagImmutable)
}

// readDestinationRepo reads w's destination repository and its tags, through its
// destination's role; nothing is known of one that cannot be read (said in the debug log).
func readDestinationRepo(ctx context.Context, sess *awsSession, log *slog.Logger, w backfill.Work, owner string) destinationRepo {
	reg, err := sess.resolver.Client(ctx, destinations.DestinationAccess(w.Target.Destination))
	if err != nil {
		log.Debug("destination repository not read", "repository", w.Target.Repo().String(), "error", err.Error())
		return destinationRepo{}
	}
	repo, err := reg.DescribeRepository(ctx, w.Target.Repository)
	if err != nil {
		log.Debug("destination repository not read", "repository", w.Target.Repo().String(), "error", err.Error())
		return destinationRepo{}
	}
	d := destinationRepo{mutability: &repo}
	if owner != "" {
		d.notOwned = destinations.NotOwned(w.Target.Repo(), repo, owner)
	}
	return d
}

// withoutBlocked is the plan with the blocked copies taken out of its copies to make
// (they are neither drift nor in sync), and each repository's row corrected: its copies
// to make, and "repository to create" only where the rule creates it.
func withoutBlocked(resp *backfill.Response, keep []backfill.Work, blocked []blockedCopy) *backfill.Response {
	if len(blocked) == 0 {
		return resp
	}
	out := *resp
	out.Work, out.Drift = keep, resp.Drift-len(blocked)
	out.Plan = append([]backfill.RepositoryPlan(nil), resp.Plan...)
	for _, b := range blocked {
		for i := range out.Plan {
			x := &out.Plan[i]
			if x.Repository == b.work.Repository && x.Destination == b.work.Target.Repo().String() {
				x.Work--
				if b.work.Reason == backfill.ReasonRepositoryMissing {
					x.CreateRepository = false
				}
			}
		}
	}
	return &out
}

// blockedIn counts the blocked copies of one source and destination repository.
func blockedIn(blocked []blockedCopy, repo, dest string) int {
	n := 0
	for _, b := range blocked {
		if b.work.Repository == repo && b.work.Target.Repo().String() == dest {
			n++
		}
	}
	return n
}

// result is the blocked copy as a result line names it.
func (b blockedCopy) result() imageResult {
	return imageResult{Destination: b.work.Target.Repo().String(), Tag: b.work.Tag, Digest: b.work.Digest, Outcome: b.state, Code: b.code, Message: b.msg}
}
