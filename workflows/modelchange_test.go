package workflows

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/mock"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/registry"
)

// changeFake scripts ModelChange's activities: the registry's aliases
// and the running retrains.
type changeFake struct {
	aliases  registry.Aliases
	running  []activities.RetrainRun
	applyErr error

	mu       sync.Mutex
	applied  []activities.ModelChangeRequest
	listed   int
	signaled []string
}

func (f *changeFake) env(t *testing.T) *testsuite.TestWorkflowEnvironment {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetStartWorkflowOptions(client.StartWorkflowOptions{ID: "models-rollback-ranker-20261122T100000.000Z"})
	var a *activities.ModelChange
	env.OnActivity(a.ReadModelAliases, mock.Anything, mock.Anything).Return(func(_ context.Context, model string) (registry.Aliases, error) {
		if model != "" && model != "ranker" {
			return registry.Aliases{}, temporal.NewNonRetryableApplicationError("no model "+model, activities.ErrTypeInvalidParams, nil)
		}
		return f.aliases, nil
	})
	env.OnActivity(a.ApplyModelChange, mock.Anything, mock.Anything).Return(func(_ context.Context, req activities.ModelChangeRequest) (activities.ModelChangeApplied, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.applied = append(f.applied, req)
		if f.applyErr != nil {
			return activities.ModelChangeApplied{}, f.applyErr
		}
		after := f.aliases
		after.Revision++
		switch req.Change.Action {
		case registry.ActionRollback:
			after.Production, after.Previous = f.aliases.Previous, ""
		case registry.ActionPromote:
			after.Previous, after.Production = f.aliases.Production, req.Change.Version
			if after.Canary == req.Change.Version {
				after.Canary, after.CanaryWeight = "", 0
			}
		}
		return activities.ModelChangeApplied{Aliases: after, Changed: true}, nil
	})
	env.OnActivity(a.ActiveRetrains, mock.Anything, "ranker").Return(func(context.Context, string) ([]activities.RetrainRun, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.listed++
		return f.running, nil
	})
	env.OnSignalExternalWorkflow(mock.Anything, mock.Anything, mock.Anything, SignalRollback, mock.Anything).Return(
		func(_, id, _, _ string, arg any) error {
			stop := arg.(RetrainStop)
			f.mu.Lock()
			defer f.mu.Unlock()
			f.signaled = append(f.signaled, id+": "+stop.By+": "+stop.Reason)
			if id == "retrain-ranker-gone" {
				return errors.New("workflow execution already completed")
			}
			return nil
		})
	return env
}

func TestModelChangePromotesTheCanaryItRead(t *testing.T) {
	t.Parallel()
	f := &changeFake{aliases: registry.Aliases{Model: "ranker", Revision: 4, Production: prodV, Canary: candV, CanaryWeight: 0.1},
		running: []activities.RetrainRun{{WorkflowID: "retrain-ranker-1"}}}
	env := f.env(t)
	env.ExecuteWorkflow(ModelChange, ModelChangeParams{Ref: registry.AliasCanary,
		Change: registry.Change{Action: registry.ActionPromote, Actor: "alice", Reason: "canary ctr +2%"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res ModelChangeResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if len(f.applied) != 1 {
		t.Fatalf("%d changes applied, want 1", len(f.applied))
	}
	req := f.applied[0]
	if req.Model != "ranker" || req.Revision != 4 || req.Change.Version != candV || req.Change.Actor != "alice (workflow models-rollback-ranker-20261122T100000.000Z)" {
		t.Errorf("applied %+v: want the canary %s promoted on revision 4 by alice, with the workflow id", req, candV)
	}
	if !res.Changed || res.Model != "ranker" || res.Before.Revision != 4 || res.After.Production != candV || res.After.Previous != prodV {
		t.Errorf("result %+v", res)
	}
	if f.listed != 0 || len(f.signaled) != 0 {
		t.Errorf("a promotion looked for (%d) or signaled (%v) retraining runs", f.listed, f.signaled)
	}
}

func TestModelChangeRefusesAnEmptyAlias(t *testing.T) {
	t.Parallel()
	f := &changeFake{aliases: registry.Aliases{Model: "ranker", Revision: 4, Production: prodV}}
	env := f.env(t)
	env.ExecuteWorkflow(ModelChange, ModelChangeParams{Model: "ranker", Ref: registry.AliasCanary,
		Change: registry.Change{Action: registry.ActionPromote, Actor: "alice"}})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypeInvalidParams ||
		!strings.Contains(err.Error(), "ranker has no canary version (revision 4)") {
		t.Fatalf("promote canary without one: %v", err)
	}
	if len(f.applied) != 0 {
		t.Errorf("changes applied: %+v", f.applied)
	}
}

func TestModelChangeConflictFailsTheRun(t *testing.T) {
	t.Parallel()
	f := &changeFake{aliases: registry.Aliases{Model: "ranker", Revision: 4, Production: prodV, Previous: candV},
		applyErr: temporal.NewNonRetryableApplicationError("model aliases changed concurrently: production is x", activities.ErrTypeConflict, nil)}
	env := f.env(t)
	env.ExecuteWorkflow(ModelChange, ModelChangeParams{Change: registry.Change{Action: registry.ActionRollback, Actor: "alice"}})
	var appErr *temporal.ApplicationError
	if err := env.GetWorkflowError(); !errors.As(err, &appErr) || appErr.Type() != activities.ErrTypeConflict {
		t.Fatalf("conflicting rollback: %v", err)
	}
	if len(f.applied) != 1 || f.listed != 0 {
		t.Errorf("%d attempts (a conflict is not retried), retrains listed %d times (not after a failed rollback)", len(f.applied), f.listed)
	}
}

func TestModelChangeRollbackStopsRunningRetrains(t *testing.T) {
	t.Parallel()
	f := &changeFake{aliases: registry.Aliases{Model: "ranker", Revision: 9, Production: candV, Previous: prodV},
		running: []activities.RetrainRun{
			{WorkflowID: "retrain-ranker-20261122T030000Z", RunID: "r1", Stage: StageWatch, Version: candV},
			{WorkflowID: "retrain-ranker-gone", RunID: "r2", Stage: StageCanary},
		}}
	env := f.env(t)
	env.ExecuteWorkflow(ModelChange, ModelChangeParams{Model: "ranker",
		Change: registry.Change{Action: registry.ActionRollback, Actor: "bob", Reason: "ctr dropped"}})
	if err := env.GetWorkflowError(); err != nil {
		t.Fatal(err)
	}
	var res ModelChangeResult
	if err := env.GetWorkflowResult(&res); err != nil {
		t.Fatal(err)
	}
	if res.After.Production != prodV || !res.Changed {
		t.Fatalf("rollback result %+v", res)
	}
	want := "retrain-ranker-20261122T030000Z: bob (workflow models-rollback-ranker-20261122T100000.000Z): models rollback of ranker from " +
		candV + " to " + prodV + " (revision 10): ctr dropped"
	if len(f.signaled) != 2 || f.signaled[0] != want {
		t.Fatalf("signals %q, want the first %q", f.signaled, want)
	}
	if len(res.Stopped) != 1 || res.Stopped[0].WorkflowID != "retrain-ranker-20261122T030000Z" {
		t.Errorf("stopped %+v, want the watching run only", res.Stopped)
	}
	if len(res.Notes) != 1 || !strings.Contains(res.Notes[0], "retraining run retrain-ranker-gone not signaled (it may have just ended)") {
		t.Errorf("notes %q", res.Notes)
	}
}
