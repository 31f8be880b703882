package activities

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.temporal.io/sdk/activity"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/predictions"
	"github.com/adaptrec/adaptrec/serving"
)

// BatchPredictions holds the activities of the BatchPredictions workflow.
// Config supplies the registry model (server.model), the features
// (features.file, features.key_prefix), the pipeline settings (server.*)
// and the predictions settings (predictions.*); Store is the object store
// holding the event log, the registry and the feature snapshots; Redis the
// online store the predictions are written to.
type BatchPredictions struct {
	Config config.Config
	Store  *objstore.Store
	Redis  redis.UniversalClient
}

// PredictionsRequest asks for a new version of batch predictions. Zero
// values mean the configuration's (config predictions.*).
type PredictionsRequest struct {
	// AsOf ends the window in which an interaction makes a user active;
	// required, not in the future.
	AsOf time.Time
	// K is how many items each list holds.
	K int
	// ActiveWindow is the window's length.
	ActiveWindow time.Duration
	// MinCoverage is the least share of active users that must get a list.
	MinCoverage float64
}

// PredictionsComputed is what ComputePredictions wrote: a complete version,
// rejected when Meta.Failures is not empty.
type PredictionsComputed struct {
	Meta predictions.Meta
	// Events is how many interactions of the window were read.
	Events int64
	// NoList counts active users with nothing to rank (retrieval found no
	// candidate); Errors users whose ranking failed, FirstError the first
	// failure. Neither has a list: both lower the coverage.
	NoList, Errors int
	FirstError     string
	// Levels counts lists by the degradation level the pipeline reached
	// (DEGRADATION_LEVEL_FULL, _STALE_FEATURES, _SIMPLE_RANKING).
	Levels map[string]int
	// ScanSeconds were spent finding the active users, RankSeconds ranking
	// and writing.
	ScanSeconds, RankSeconds float64
}

// PredictionsProgress is the heartbeat of ComputePredictions, shown by the
// Temporal UI and `adaptrec predictions run --wait`.
type PredictionsProgress struct {
	// Stage is "scanning" (finding active users) or "ranking".
	Stage string
	// Events read so far; Users active users found; Ranked users ranked
	// so far, Written lists written.
	Events                 int64
	Users, Ranked, Written int
}

// PredictionsPublished is what PublishPredictions did: the pointer it
// wrote and the versions the prune deleted and kept.
type PredictionsPublished struct {
	Pointer      predictions.Pointer
	Pruned, Kept []int64
	PrunedKeys   int
	PruneError   string
}

// Application error types of the predictions activities.
const (
	// ErrTypePredictionsConflict: the pointer moved (another run or a
	// rollback) between reading and flipping it; run the workflow again.
	ErrTypePredictionsConflict = "PredictionsConflict"
)

func (a *BatchPredictions) settings(req PredictionsRequest) (PredictionsRequest, error) {
	c := a.Config.Predictions
	if req.K == 0 {
		req.K = c.K
	}
	if req.ActiveWindow == 0 {
		req.ActiveWindow = c.ActiveWindow
	}
	if req.MinCoverage == 0 {
		req.MinCoverage = c.MinCoverage
	}
	switch {
	case req.AsOf.IsZero() || req.AsOf.After(time.Now()):
		return req, fmt.Errorf("as-of %s must be set and not in the future", req.AsOf.Format(time.RFC3339))
	case req.K < 1 || req.K > serving.MaxNumItems:
		return req, fmt.Errorf("k %d must be in 1..%d", req.K, serving.MaxNumItems)
	case req.ActiveWindow < time.Hour:
		return req, fmt.Errorf("active window %s must be >= 1h", req.ActiveWindow)
	case !(req.MinCoverage > 0 && req.MinCoverage <= 1):
		return req, fmt.Errorf("min coverage %v must be in (0, 1]", req.MinCoverage)
	}
	return req, nil
}

// ComputePredictions finds the users active in the window (those with an
// interaction in the archived event log), ranks each through the serving
// pipeline with the production model (serving.BatchRanker), writes their
// lists to a new version in pipelined chunks and validates it (every list;
// coverage against the active users; the user count against the current
// version's). It never moves the pointer: a rejected version comes back
// with Meta.Failures set, not as an error. It heartbeats its progress. A
// retried attempt writes a new version; the abandoned one is deleted by
// the next successful run's prune.
func (a *BatchPredictions) ComputePredictions(ctx context.Context, req PredictionsRequest) (PredictionsComputed, error) {
	var res PredictionsComputed
	req, err := a.settings(req)
	if err != nil {
		return res, nonRetryable(err, "InvalidParams")
	}
	store, err := predictions.NewStore(a.Redis, predictions.Options{KeyPrefix: a.Config.Features.KeyPrefix, Pipeline: a.Config.Predictions.WritePipeline})
	if err != nil {
		return res, nonRetryable(err, "InvalidConfig")
	}
	log := activity.GetLogger(ctx)
	prog := PredictionsProgress{Stage: "scanning"}

	// 1. Active users, from the archived interactions: the batch lane's
	// source of truth, cheap to list by hour, and independent of what
	// the online store happens to hold.
	start := time.Now()
	seen := map[string]struct{}{}
	from := req.AsOf.Add(-req.ActiveWindow)
	lastBeat := time.Now()
	err = eventlog.Scan(ctx, a.Store, events.TopicInteractions, from, req.AsOf, func(r *eventlog.Row) error {
		prog.Events++
		if r.UserID != "" {
			seen[r.UserID] = struct{}{}
		}
		if time.Since(lastBeat) >= time.Second {
			prog.Users, lastBeat = len(seen), time.Now()
			activity.RecordHeartbeat(ctx, prog)
		}
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("find active users in [%s, %s): %w", from.Format(time.RFC3339), req.AsOf.Format(time.RFC3339), err)
	}
	users := make([]string, 0, len(seen))
	for u := range seen {
		users = append(users, u)
	}
	slices.Sort(users)
	res.Events, res.ScanSeconds = prog.Events, time.Since(start).Seconds()
	prog.Stage, prog.Users = "ranking", len(users)
	activity.RecordHeartbeat(ctx, prog)
	log.Info("batch predictions: active users found", "users", len(users), "events", prog.Events, "from", from, "to", req.AsOf)

	// 2. Rank and write.
	start = time.Now()
	// Loading the catalogue and the model can take longer than the
	// heartbeat timeout on a large catalogue: keep beating meanwhile.
	opened := make(chan struct{})
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-opened:
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx, prog)
			}
		}
	}()
	br, err := serving.OpenBatchRanker(ctx, a.Config, a.Store, a.Redis, serving.BatchRankerOptions{})
	close(opened)
	if err != nil {
		return res, err
	}
	defer br.Close()
	w, err := store.Begin(ctx, predictions.VersionInfo{Model: br.Model(), ModelVersion: br.ModelVersion(), K: req.K, AsOf: req.AsOf})
	if err != nil {
		return res, err
	}
	log.Info("batch predictions: ranking", "version", predictions.VersionName(w.Version()), "model_version", br.ModelVersion(), "users", len(users), "k", req.K)
	rk := &rankRun{levels: map[string]int{}}
	var next atomic.Int64
	done := make(chan error, 1)
	go func() {
		var wg sync.WaitGroup
		errs := make([]error, a.Config.Predictions.Parallelism)
		for g := range a.Config.Predictions.Parallelism {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= len(users) || ctx.Err() != nil {
						return
					}
					if err := rk.one(ctx, br, w, users[i], req.K); err != nil {
						errs[g] = err
						next.Store(int64(len(users))) // stop the others
						return
					}
				}
			}()
		}
		wg.Wait()
		done <- errors.Join(errs...)
	}()
	beat := time.NewTicker(time.Second)
	defer beat.Stop()
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		case <-beat.C:
			prog.Ranked, prog.Written = int(rk.ranked.Load()), w.Written()
			activity.RecordHeartbeat(ctx, prog)
		}
	}
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return res, err
	}
	v := predictions.Validation{MinCoverage: req.MinCoverage, MaxUserDrop: a.Config.Predictions.MaxUserDrop, MinUsers: a.Config.Predictions.MinUsers}
	if res.Meta, err = w.Close(ctx, len(users), v); err != nil {
		return res, err
	}
	res.NoList, res.Errors, res.FirstError, res.Levels = rk.noList, rk.errs, rk.firstErr, rk.levels
	res.RankSeconds = time.Since(start).Seconds()
	log.Info("batch predictions: version written", "version", res.Meta.Name(), "users", res.Meta.Users, "active", len(users),
		"no_list", res.NoList, "errors", res.Errors, "rejected", res.Meta.Rejected(), "failures", predictions.Describe(res.Meta.Failures))
	return res, nil
}

// rankRun tallies one ranking pass.
type rankRun struct {
	ranked   atomic.Int64
	mu       sync.Mutex
	levels   map[string]int
	noList   int
	errs     int
	firstErr string
}

// one ranks a user as serving would now (the features are the current
// ones) and adds the list; only a write error (or the end of ctx) is
// returned, a user that cannot be ranked is counted.
func (r *rankRun) one(ctx context.Context, br *serving.BatchRanker, w *predictions.Writer, user string, k int) error {
	list, level, err := br.Rank(ctx, user, k, time.Now())
	r.ranked.Add(1)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.mu.Lock()
		if errors.Is(err, serving.ErrNoList) {
			r.noList++
		} else {
			if r.errs == 0 {
				r.firstErr = err.Error()
			}
			r.errs++
		}
		r.mu.Unlock()
		return nil
	}
	r.mu.Lock()
	r.levels[level.String()]++
	r.mu.Unlock()
	return w.Add(ctx, user, list)
}

// PublishPredictions makes a complete, accepted version current (keeping
// the current one as the previous, the rollback target) and then prunes
// old versions down to config predictions.keep. A rejected or unknown
// version fails without retries, as does a pointer moved since the run
// began (ErrTypePredictionsConflict). A failed prune does not fail the
// activity: the flip stands, and PruneError says why; the next run prunes
// again.
func (a *BatchPredictions) PublishPredictions(ctx context.Context, version int64) (PredictionsPublished, error) {
	var res PredictionsPublished
	store, err := predictions.NewStore(a.Redis, predictions.Options{KeyPrefix: a.Config.Features.KeyPrefix, Pipeline: a.Config.Predictions.WritePipeline})
	if err != nil {
		return res, nonRetryable(err, "InvalidConfig")
	}
	p, err := store.Flip(ctx, version)
	switch {
	case errors.Is(err, predictions.ErrRejected), errors.Is(err, predictions.ErrNotFound):
		return res, nonRetryable(err, "InvalidParams")
	case errors.Is(err, predictions.ErrConflict):
		return res, nonRetryable(err, ErrTypePredictionsConflict)
	case err != nil:
		return res, err
	}
	res.Pointer = p
	rep, err := store.Prune(ctx, a.Config.Predictions.Keep)
	res.Pruned, res.Kept, res.PrunedKeys = rep.Deleted, rep.Kept, rep.Keys
	if err != nil {
		res.PruneError = err.Error()
		activity.GetLogger(ctx).Warn("batch predictions: prune failed; the next run prunes again", "err", err)
	}
	return res, nil
}
