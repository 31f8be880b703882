package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/registry"
)

// RetrainWorkflowType is the workflow type of workflows.RetrainWorkflow,
// which visibility queries name (activities cannot import workflows).
const RetrainWorkflowType = "RetrainWorkflow"

// Memo fields every starter of a RetrainWorkflow run sets (the CLI, the
// daily Schedule, the drift check), so listings can tell the model and
// the reason without reading each run's history.
const (
	// MemoModel is the registry model the run retrains.
	MemoModel = "model"
	// MemoReason says why the run was started.
	MemoReason = "reason"
)

// Search attributes RetrainWorkflow upserts (workflows.SearchAttrStage
// and the others), by name.
const (
	SearchAttrNameModelVersion = "AdaptrecModelVersion"
	SearchAttrNameStage        = "AdaptrecStage"
	SearchAttrNameOutcome      = "AdaptrecOutcome"
)

// ModelChange holds the activities of the ModelChange workflow
// (workflows.ModelChange): alias changes made through Temporal, so each
// has a workflow id, a history and a link, and the retraining runs a
// change concerns.
type ModelChange struct {
	// Registry changes aliases; its Features are the definitions a
	// version about to get an alias is checked against, unless a request
	// brings its own.
	Registry *registry.Client
	// Temporal finds the running retraining runs (visibility API); only
	// ActiveRetrains needs it.
	Temporal client.Client
}

// ReadModelAliases reads the aliases of model; an empty model names the
// only model in the registry (an error naming them when there are
// several).
func (a *ModelChange) ReadModelAliases(ctx context.Context, model string) (registry.Aliases, error) {
	if model == "" {
		models, err := a.Registry.Models(ctx)
		if err != nil {
			return registry.Aliases{}, fmt.Errorf("list the models: %w", err)
		}
		switch len(models) {
		case 0:
			return registry.Aliases{}, nonRetryable(fmt.Errorf("%w: no models under %s", registry.ErrNotFound, a.Registry.Store.URI(registry.Root)), ErrTypeInvalidParams)
		case 1:
			model = models[0]
		default:
			return registry.Aliases{}, nonRetryable(fmt.Errorf("the registry holds the models %s: choose one with --model", strings.Join(models, ", ")), ErrTypeInvalidParams)
		}
	}
	if err := registry.CheckModel(model); err != nil {
		return registry.Aliases{}, nonRetryable(err, ErrTypeInvalidParams)
	}
	al, err := a.Registry.Aliases(ctx, model)
	if err != nil {
		return al, fmt.Errorf("aliases of %s: %w", model, err)
	}
	al.Model = model
	return al, nil
}

// ModelChangeRequest is one alias change, decided on the aliases at
// Revision.
type ModelChangeRequest struct {
	Model string
	// Revision is the revision of the aliases the change was decided on
	// (an alias in the command resolved on it): if the aliases are at
	// another revision the change is refused, as registry.ApplyFrom
	// refuses a lost compare-and-swap.
	Revision int64
	// Change has its Version resolved.
	Change registry.Change
	// Definitions, when set, are feature definitions (features.yaml
	// format) the version must be servable with instead of the worker's;
	// DefinitionsSource names them in errors.
	Definitions       []byte
	DefinitionsSource string
}

// ModelChangeApplied is what ApplyModelChange did.
type ModelChangeApplied struct {
	// Aliases are the aliases after the change.
	Aliases registry.Aliases
	// Changed is false when the change changed nothing (already so).
	Changed bool
	// Warning is set when the change stands but its ModelLifecycleEvent
	// was not published (making the same change again publishes it).
	Warning string
}

// ApplyModelChange applies one alias change with a compare-and-swap on
// the aliases at req.Revision. A retried attempt after one that made the
// change finds the next revision recording the same change and returns it
// (a rollback is never applied twice). A change refused because the
// aliases moved fails with ErrTypeConflict, one the registry refuses
// (invalid, unknown version, nothing to roll back to, corrupt) with
// ErrTypeInvalidParams, neither retried.
func (a *ModelChange) ApplyModelChange(ctx context.Context, req ModelChangeRequest) (ModelChangeApplied, error) {
	reg := a.Registry
	if len(req.Definitions) > 0 {
		fs, err := features.Parse(req.DefinitionsSource, req.Definitions)
		if err != nil {
			return ModelChangeApplied{}, nonRetryable(fmt.Errorf("feature definitions %s: %w", req.DefinitionsSource, err), ErrTypeInvalidParams)
		}
		c := *a.Registry
		c.Features = fs
		reg = &c
	}
	now, err := reg.Aliases(ctx, req.Model)
	if err != nil {
		return ModelChangeApplied{}, fmt.Errorf("aliases of %s: %w", req.Model, err)
	}
	switch {
	case now.Revision == req.Revision:
	case now.Revision == req.Revision+1 && sameChange(now.Change, req.Change):
		activity.GetLogger(ctx).Info("alias change already made by an earlier attempt", "model", req.Model, "revision", now.Revision)
		return ModelChangeApplied{Aliases: now, Changed: true}, nil
	default:
		return ModelChangeApplied{}, nonRetryable(fmt.Errorf("%w: %s %s of %s was decided on revision %d, but the aliases are at revision %d now (production %s); nothing was changed: read them again and decide again",
			registry.ErrConflict, req.Change.Action, orDash(req.Change.Version), req.Model, req.Revision, now.Revision, orDash(now.Production)), ErrTypeConflict)
	}
	after, err := reg.ApplyFrom(ctx, now, req.Change)
	res := ModelChangeApplied{Aliases: after, Changed: after.Revision != now.Revision}
	switch {
	case err == nil:
	case errors.Is(err, registry.ErrUnpublished):
		res.Warning = err.Error()
	case errors.Is(err, registry.ErrConflict):
		return res, nonRetryable(err, ErrTypeConflict)
	case errors.Is(err, registry.ErrInvalid), errors.Is(err, registry.ErrNotFound), errors.Is(err, registry.ErrNoPrevious), errors.Is(err, registry.ErrCorrupt):
		return res, nonRetryable(err, ErrTypeInvalidParams)
	default:
		return res, err
	}
	activity.GetLogger(ctx).Info("aliases changed", "model", req.Model, "action", req.Change.Action, "version", after.Change.Version,
		"revision", after.Revision, "actor", req.Change.Actor, "reason", req.Change.Reason)
	return res, nil
}

// sameChange reports whether made (the change recorded in a revision) is
// the change asked for.
func sameChange(made *registry.Change, asked registry.Change) bool {
	if made == nil || made.Action != asked.Action || made.Actor != asked.Actor || made.Reason != asked.Reason ||
		made.ExpectProduction != asked.ExpectProduction {
		return false
	}
	return asked.Version == "" || made.Version == asked.Version
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// RetrainRun is a RetrainWorkflow run as Temporal's visibility API lists
// it.
type RetrainRun struct {
	WorkflowID, RunID string
	// Model and Reason come from the run's memo; Model is "" for a run
	// started without one (its model is unknown).
	Model, Reason string
	// Status is the execution status (Running, Completed, Failed, ...).
	Status string
	// Stage, Version and Outcome are the run's search attributes
	// (AdaptrecStage, AdaptrecModelVersion, AdaptrecOutcome).
	Stage, Version, Outcome string
	Start, Close            time.Time
}

// Running reports whether the run has not closed.
func (r RetrainRun) Running() bool {
	return r.Status == enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING.String()
}

// ListRetrainRuns lists RetrainWorkflow runs, newest first: the running
// ones when running is true, otherwise every run, up to limit. Runs of
// another model are left out; runs without a model in their memo are
// kept (they may be model's).
func ListRetrainRuns(ctx context.Context, c client.Client, model string, running bool, limit int) ([]RetrainRun, error) {
	q := fmt.Sprintf("WorkflowType = %q", RetrainWorkflowType)
	if running {
		q += " AND ExecutionStatus = 'Running'"
	}
	var out []RetrainRun
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: q, PageSize: int32(min(limit, 100)), NextPageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list %s runs (%s): %w", RetrainWorkflowType, q, err)
		}
		for _, e := range resp.GetExecutions() {
			r := RetrainRun{
				WorkflowID: e.GetExecution().GetWorkflowId(), RunID: e.GetExecution().GetRunId(),
				Status: e.GetStatus().String(),
				Model:  payloadString(e.GetMemo().GetFields()[MemoModel]), Reason: payloadString(e.GetMemo().GetFields()[MemoReason]),
				Stage:   payloadString(e.GetSearchAttributes().GetIndexedFields()[SearchAttrNameStage]),
				Version: payloadString(e.GetSearchAttributes().GetIndexedFields()[SearchAttrNameModelVersion]),
				Outcome: payloadString(e.GetSearchAttributes().GetIndexedFields()[SearchAttrNameOutcome]),
			}
			r.Status = strings.TrimPrefix(r.Status, "WORKFLOW_EXECUTION_STATUS_")
			r.Status = strings.ToUpper(r.Status[:1]) + strings.ToLower(r.Status[1:])
			if t := e.GetStartTime(); t != nil {
				r.Start = t.AsTime()
			}
			if t := e.GetCloseTime(); t != nil {
				r.Close = t.AsTime()
			}
			if model != "" && r.Model != "" && r.Model != model {
				continue
			}
			out = append(out, r)
			if len(out) >= limit {
				return out, nil
			}
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return out, nil
		}
	}
}

// payloadString decodes a string memo field or keyword search attribute
// ("" when absent or not a string).
func payloadString(p *commonpb.Payload) string {
	if p == nil {
		return ""
	}
	var s string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &s); err != nil {
		return ""
	}
	return s
}

// ActiveRetrains lists the running RetrainWorkflow runs of model (and
// those whose model is unknown), newest first.
func (a *ModelChange) ActiveRetrains(ctx context.Context, model string) ([]RetrainRun, error) {
	if a.Temporal == nil {
		return nil, nonRetryable(errors.New("the worker has no Temporal client (ModelChange.Temporal)"), ErrTypeInvalidParams)
	}
	return ListRetrainRuns(ctx, a.Temporal, model, true, 100)
}
