package workflows

import (
	"fmt"
	"slices"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/registry"
)

// ModelChangeParams asks ModelChange for one alias change.
type ModelChangeParams struct {
	// Model is the registry model; "" names the only one.
	Model string
	// Ref is the version or alias (production, previous, shadow, canary)
	// that promote, shadow and canary give an alias to; an alias is
	// resolved on the aliases the change is applied to, so "promote
	// canary" promotes the canary the run read or nothing. Empty for
	// rollback and the clears.
	Ref string
	// Change is the change; its Version is filled in from Ref.
	Change registry.Change
	// Definitions, when set, are the feature definitions (YAML) the
	// version must be servable with instead of the worker's
	// (features.file); DefinitionsSource names them.
	Definitions       []byte
	DefinitionsSource string
}

// ModelChangeResult is what a ModelChange run did.
type ModelChangeResult struct {
	Model string
	// Before are the aliases the change was decided on, After those it
	// left; Changed is false when it changed nothing (already so).
	Before, After registry.Aliases
	Changed       bool
	// Warning is set when the change stands but its lifecycle event was
	// not published.
	Warning string
	// Stopped are the retraining runs a rollback signaled to stop
	// (SignalRollback); Notes what else happened on the way.
	Stopped []activities.RetrainRun
	Notes   []string
}

// ModelChange applies one alias change of the model registry (what
// `adaptrec models promote|rollback` ask for) as a workflow, so the change
// has a workflow id, a history and a UI link: it reads the aliases,
// resolves Ref on them and applies the change by compare-and-swap on that
// revision (ApplyModelChange), recording the workflow id with the actor.
//
// A rollback also stops the model's running retraining runs with their
// rollback signal: each one decided on the production version just rolled
// back from, so its next alias change would fail on its compare-and-swap;
// stopped, it withdraws its version from shadow and canary and, in its
// post-cutover watch, finds production already rolled back and leaves it.
// The signals are sent after the rollback is made, so a run that is
// watching never rolls production back a second time.
func ModelChange(ctx workflow.Context, p ModelChangeParams) (ModelChangeResult, error) {
	res := ModelChangeResult{Model: p.Model}
	var a *activities.ModelChange
	if !slices.Contains(registry.Actions, p.Change.Action) {
		return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("unknown alias change %q", p.Change.Action), activities.ErrTypeInvalidParams, nil)
	}
	if err := workflow.ExecuteActivity(shortOptions(ctx), a.ReadModelAliases, p.Model).Get(ctx, &res.Before); err != nil {
		return res, fmt.Errorf("read the aliases: %w", err)
	}
	res.Model = res.Before.Model
	ch := p.Change
	if v, isAlias := res.Before.Get(p.Ref); isAlias {
		if v == "" {
			return res, temporal.NewNonRetryableApplicationError(fmt.Sprintf("%s: %s has no %s version (revision %d)",
				registry.ErrNotFound, res.Model, p.Ref, res.Before.Revision), activities.ErrTypeInvalidParams, nil)
		}
		ch.Version = v
	} else if p.Ref != "" {
		ch.Version = p.Ref
	}
	ch.Actor += " (workflow " + workflow.GetInfo(ctx).WorkflowExecution.ID + ")"
	req := activities.ModelChangeRequest{Model: res.Model, Revision: res.Before.Revision, Change: ch,
		Definitions: p.Definitions, DefinitionsSource: p.DefinitionsSource}
	var applied activities.ModelChangeApplied
	if err := workflow.ExecuteActivity(aliasOptions(ctx), a.ApplyModelChange, req).Get(ctx, &applied); err != nil {
		return res, err
	}
	res.After, res.Changed, res.Warning = applied.Aliases, applied.Changed, applied.Warning
	if ch.Action != registry.ActionRollback || !res.Changed {
		return res, nil
	}
	var runs []activities.RetrainRun
	if err := workflow.ExecuteActivity(shortOptions(ctx), a.ActiveRetrains, res.Model).Get(ctx, &runs); err != nil {
		// The rollback stands; the runs fail at their next alias change.
		res.Notes = append(res.Notes, fmt.Sprintf("running retraining runs not found (they fail at their next alias change): %v", err))
		return res, nil
	}
	stop := RetrainStop{By: ch.Actor, Reason: fmt.Sprintf("models rollback of %s from %s to %s (revision %d): %s",
		res.Model, res.Before.Production, res.After.Production, res.After.Revision, orUnknown(ch.Reason))}
	for _, run := range runs {
		err := workflow.SignalExternalWorkflow(ctx, run.WorkflowID, run.RunID, SignalRollback, stop).Get(ctx, nil)
		if err != nil {
			res.Notes = append(res.Notes, fmt.Sprintf("retraining run %s not signaled (it may have just ended): %v", run.WorkflowID, err))
			continue
		}
		res.Stopped = append(res.Stopped, run)
		workflow.GetLogger(ctx).Info("retraining run stopped", "workflow", run.WorkflowID, "stage", run.Stage)
	}
	return res, nil
}
