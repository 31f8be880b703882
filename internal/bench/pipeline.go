package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// Goals of `adaptrec bench pipeline` (retraining issue) on a 2-core
// machine: RetrainWorkflow end to end on 1,000,000 simulated events within
// five minutes, every serving instance answering with the new version
// within two seconds of the promotion and with the previous one within two
// seconds of a rollback, and no failed request meanwhile.
const (
	PipelineTargetTotalSeconds = 300
	PipelineTargetCutoverMs    = 2000
	PipelineTargetRollbackMs   = 2000
	DefaultPipelineEvents      = 1_000_000
)

// PipelineResult is what `adaptrec bench pipeline` measured; its JSON names
// are the command's output.
type PipelineResult struct {
	Bench  string `json:"bench"`
	Events int    `json:"events"`
	// TotalSeconds is the RetrainWorkflow run from its start to its result;
	// Stages the seconds of each of its stages (RetrainResult.Timings).
	TotalSeconds float64            `json:"total_seconds"`
	Stages       map[string]float64 `json:"stages"`
	// Outcome is the run's outcome (Succeeded or its error type).
	Outcome string   `json:"outcome"`
	Notes   []string `json:"notes,omitempty"`
	// PreviousVersion served before the run, NewVersion is the one it
	// promoted; RolledBackTo is production after the rollback.
	PreviousVersion string `json:"previous_version"`
	NewVersion      string `json:"new_version"`
	RolledBackTo    string `json:"rolled_back_to"`
	// CutoverMs is from the promotion's ModelLifecycleEvent to every
	// serving instance answering with the new version; RollbackMs from the
	// start of the ModelChange workflow that rolls production back (as
	// `adaptrec models rollback` runs it) to every instance answering with
	// the previous version. Per instance in CutoverMsByInstance and
	// RollbackMsByInstance (-1: the instance never switched).
	CutoverMs            float64   `json:"cutover_ms"`
	RollbackMs           float64   `json:"rollback_ms"`
	CutoverMsByInstance  []float64 `json:"cutover_ms_by_instance"`
	RollbackMsByInstance []float64 `json:"rollback_ms_by_instance"`
	// RollbackWorkflowMs is the rollback's ModelChange run from its start
	// to its close, as Temporal recorded them (-1 when not measured).
	RollbackWorkflowMs float64 `json:"rollback_workflow_ms"`
	// FailedRequestsCutover and FailedRequestsRollback count Recommend
	// calls that failed (a gRPC error) from each change until every
	// instance had switched and settled; FailedRequests over the whole
	// load, Requests the calls made.
	FailedRequestsCutover  int64 `json:"failed_requests_cutover"`
	FailedRequestsRollback int64 `json:"failed_requests_rollback"`
	FailedRequests         int64 `json:"failed_requests"`
	Requests               int64 `json:"requests"`
	// Instances is the number of serving instances under load.
	Instances int `json:"instances"`
	// SetupSeconds is everything before the run, not part of TotalSeconds:
	// the stack, the history through Kafka and the archiver, the batch
	// features, the first model and the serving instances.
	SetupSeconds float64 `json:"setup_seconds"`
	// Settings are the shortened pipeline settings the run had.
	Settings map[string]string `json:"settings"`
	// Targets and whether they were met; Missed names each missed one.
	TargetTotalSeconds float64  `json:"target_total_seconds"`
	TargetCutoverMs    float64  `json:"target_cutover_ms"`
	TargetRollbackMs   float64  `json:"target_rollback_ms"`
	MeetsTarget        bool     `json:"meets_target"`
	Missed             []string `json:"missed,omitempty"`
	Mode               string   `json:"mode"`
}

// Evaluate fills the targets, MeetsTarget and Missed.
func (r *PipelineResult) Evaluate() {
	r.TargetTotalSeconds, r.TargetCutoverMs, r.TargetRollbackMs = PipelineTargetTotalSeconds, PipelineTargetCutoverMs, PipelineTargetRollbackMs
	r.Missed = nil
	miss := func(format string, args ...any) { r.Missed = append(r.Missed, fmt.Sprintf(format, args...)) }
	if r.Outcome != "Succeeded" {
		miss("the run did not succeed: %s", orDash(r.Outcome))
	}
	if r.TotalSeconds <= 0 || r.TotalSeconds > PipelineTargetTotalSeconds {
		miss("total_seconds %.1f is not in (0, %d]", r.TotalSeconds, PipelineTargetTotalSeconds)
	}
	if r.CutoverMs < 0 || r.CutoverMs > PipelineTargetCutoverMs {
		miss("cutover_ms %.0f is not in [0, %d]", r.CutoverMs, PipelineTargetCutoverMs)
	}
	if r.RollbackMs < 0 || r.RollbackMs > PipelineTargetRollbackMs {
		miss("rollback_ms %.0f is not in [0, %d]", r.RollbackMs, PipelineTargetRollbackMs)
	}
	if r.FailedRequestsCutover != 0 || r.FailedRequestsRollback != 0 {
		miss("%d failed requests during the cutover and %d during the rollback, want none", r.FailedRequestsCutover, r.FailedRequestsRollback)
	}
	if r.Instances < 2 {
		miss("%d serving instances, want at least 2", r.Instances)
	}
	r.MeetsTarget = len(r.Missed) == 0
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// Answer is one Recommend call a VersionWatch saw.
type Answer struct {
	// Sent and Received bound the call.
	Sent, Received time.Time
	// Version and Arm are the response's model_version and experiment_arm.
	Version, Arm string
	// Failed is set when the call returned an error; Code is its code.
	Failed bool
	Code   string
}

// VersionWatch records, per serving instance, which model version answered
// each call, so that the moment each instance switched versions can be
// measured from the client's side. It is safe for concurrent use.
type VersionWatch struct {
	mu      sync.Mutex
	answers [][]Answer
}

// NewVersionWatch returns a watch of n instances.
func NewVersionWatch(n int) *VersionWatch {
	return &VersionWatch{answers: make([][]Answer, n)}
}

// Instances returns the number of instances watched.
func (w *VersionWatch) Instances() int { return len(w.answers) }

// Record adds one call of instance i.
func (w *VersionWatch) Record(i int, a Answer) {
	w.mu.Lock()
	w.answers[i] = append(w.answers[i], a)
	w.mu.Unlock()
}

// Client wraps instance i's RecommendService client so that every
// Recommend call is recorded. Calls cut short by the caller's context
// ending are not recorded: they are the load generator stopping, not the
// instance failing.
func (w *VersionWatch) Client(i int, c adaptrecv1.RecommendServiceClient) adaptrecv1.RecommendServiceClient {
	return &watchedClient{RecommendServiceClient: c, w: w, i: i}
}

type watchedClient struct {
	adaptrecv1.RecommendServiceClient
	w *VersionWatch
	i int
}

func (c *watchedClient) Recommend(ctx context.Context, req *adaptrecv1.RecommendRequest, opts ...grpc.CallOption) (*adaptrecv1.RecommendResponse, error) {
	sent := time.Now()
	resp, err := c.RecommendServiceClient.Recommend(ctx, req, opts...)
	a := Answer{Sent: sent, Received: time.Now()}
	if err != nil {
		if ctx.Err() != nil {
			return resp, err
		}
		a.Failed, a.Code = true, status.Code(err).String()
	} else {
		a.Version, a.Arm = resp.GetModelVersion(), resp.GetExperimentArm()
	}
	c.w.Record(c.i, a)
	return resp, err
}

// Switch is when one instance switched to a version after a change.
type Switch struct {
	// At is the first answer with the version after the last answer with
	// another one (the change time when none came after it); Ms is At less
	// the change time, -1 when the instance never answered with the
	// version after the change.
	At time.Time
	Ms float64
	// After counts the answers with the version after At: the evidence
	// that the switch held.
	After int
}

// Switched measures, per instance, when it answered with version for good
// after a change made at since: the first call answered with version
// after the last call received since the change that was answered with
// another version. Failed calls do not count as either.
func (w *VersionWatch) Switched(version string, since time.Time) []Switch {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]Switch, len(w.answers))
	for i, as := range w.answers {
		lastOther := since
		for _, a := range as {
			if !a.Failed && a.Version != version && a.Received.After(lastOther) {
				lastOther = a.Received
			}
		}
		s := Switch{Ms: -1}
		for _, a := range as {
			if a.Failed || a.Version != version || !a.Received.After(lastOther) {
				continue
			}
			if s.At.IsZero() || a.Received.Before(s.At) {
				s.At = a.Received
			}
			s.After++
		}
		if !s.At.IsZero() {
			// Nothing but the version answered since the change: the
			// instance had switched by its first answer after it.
			s.Ms = float64(s.At.Sub(since)) / float64(time.Millisecond)
		}
		out[i] = s
	}
	return out
}

// Settled reports whether every instance has answered with version for at
// least hold and at least minAnswers times since a change made at since.
func (w *VersionWatch) Settled(version string, since time.Time, hold time.Duration, minAnswers int) bool {
	now := time.Now()
	for _, s := range w.Switched(version, since) {
		if s.At.IsZero() || now.Sub(s.At) < hold || s.After < minAnswers {
			return false
		}
	}
	return true
}

// Failures counts the failed calls received in [from, to], and returns
// their codes.
func (w *VersionWatch) Failures(from, to time.Time) (int64, map[string]int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	codes := map[string]int64{}
	for _, as := range w.answers {
		for _, a := range as {
			if a.Failed && !a.Received.Before(from) && !a.Received.After(to) {
				n++
				codes[a.Code]++
			}
		}
	}
	return n, codes
}

// Totals returns the calls recorded and how many failed.
func (w *VersionWatch) Totals() (calls, failed int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, as := range w.answers {
		for _, a := range as {
			calls++
			if a.Failed {
				failed++
			}
		}
	}
	return calls, failed
}

// SlowestSwitch returns the largest Ms of the switches (-1 when any
// instance never switched) and the per-instance values.
func SlowestSwitch(ss []Switch) (float64, []float64) {
	per := make([]float64, len(ss))
	worst := 0.0
	for i, s := range ss {
		per[i] = s.Ms
		if s.Ms < 0 {
			worst = -1
		}
	}
	if worst < 0 || len(ss) == 0 {
		return -1, per
	}
	return slices.Max(per), per
}
