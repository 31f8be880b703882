package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/workflows"
)

// modelChangeID is the workflow id of a models command's change:
// models-<action>[-<model>]-<UTC time to the millisecond>.
func modelChangeID(action registry.Action, model string, at time.Time) string {
	id := "models-" + string(action)
	if model != "" {
		id += "-" + model
	}
	return id + "-" + at.UTC().Format("20060102T150405.000Z")
}

// modelsChangeWorkflow runs ch as the ModelChange workflow, waits for it
// and prints the change as modelsApply does, with the workflow id and its
// Temporal UI link.
func modelsChangeWorkflow(cmd *cobra.Command, o modelsOptions, co modelsChangeOptions, ch registry.Change, ref string) error {
	ctx := cmd.Context()
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	p := workflows.ModelChangeParams{Model: o.model, Ref: ref, Change: ch}
	if cmd.Flags().Changed("file") {
		b, err := os.ReadFile(co.file)
		if err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		if _, err := features.Parse(co.file, b); err != nil {
			return fmt.Errorf("--file: %w", err)
		}
		p.Definitions, p.DefinitionsSource = b, co.file
	}
	tc, err := dialWorkflows(ctx, cfg)
	if err != nil {
		return fmt.Errorf("%w; --direct applies the change through the registry without Temporal", err)
	}
	defer tc.Close()
	id := modelChangeID(ch.Action, o.model, time.Now())
	link := workflowLink(cfg.Temporal, id)
	run, err := tc.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: activities.TaskQueueDefault, WorkflowExecutionTimeout: 10 * time.Minute},
		workflows.ModelChange, p)
	if err != nil {
		return fmt.Errorf("start ModelChange %s: %w", id, err)
	}
	var res workflows.ModelChangeResult
	if err := run.Get(ctx, &res); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("stopped waiting for ModelChange %s; the change may still be made: %s", id, link)
		}
		return modelChangeFailure(id, link, err)
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return err
	}
	return printModelChange(cmd.OutOrStdout(), cfg.Temporal, store, o.asJSON, id, run.GetRunID(), ch, ref, res)
}

// modelChangeFailure is the command's error for a failed ModelChange run:
// the registry's refusal with the workflow id and link, wrapping
// registry.ErrConflict for a lost compare-and-swap.
func modelChangeFailure(id, link string, err error) error {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) {
		return fmt.Errorf("ModelChange %s: %w (%s)", id, err, link)
	}
	msg := fmt.Sprintf("%s (workflow %s: %s)", appErr.Message(), id, link)
	if appErr.Type() == activities.ErrTypeConflict {
		return fmt.Errorf("%w: %s", registry.ErrConflict, msg)
	}
	return errors.New(msg)
}

// printModelChange prints a ModelChange run's result as modelsApply prints
// a change, then the retraining runs it stopped and the workflow.
func printModelChange(out io.Writer, t config.Temporal, store *objstore.Store, asJSON bool, id, runID string, ch registry.Change, ref string, res workflows.ModelChangeResult) error {
	link := workflowLink(t, id)
	stopped := make([]string, len(res.Stopped))
	for i, r := range res.Stopped {
		stopped[i] = r.WorkflowID
	}
	var unpublished error
	if res.Warning != "" {
		unpublished = fmt.Errorf("%s: the change stands; run the same command again to announce it (workflow %s)", res.Warning, id)
	}
	if asJSON {
		if err := writeJSON(out, struct {
			Model      string           `json:"model"`
			Changed    bool             `json:"changed"`
			Aliases    registry.Aliases `json:"aliases"`
			Topic      string           `json:"topic"`
			WorkflowID string           `json:"workflow_id"`
			RunID      string           `json:"run_id"`
			URL        string           `json:"url"`
			Stopped    []string         `json:"stopped_retrains,omitempty"`
			Notes      []string         `json:"notes,omitempty"`
		}{res.Model, res.Changed, res.After, events.TopicModelLifecycle, id, runID, link, stopped, res.Notes}); err != nil {
			return err
		}
		return unpublished
	}
	if v, isAlias := res.Before.Get(ref); isAlias {
		ch.Version = v
	} else if ref != "" {
		ch.Version = ref
	}
	fmt.Fprintln(out, describeChange(res.Model, ch, res.Before, res.After, res.Changed))
	if unpublished == nil && res.Changed {
		fmt.Fprintf(out, "revision %d recorded in %s; announced on %s\n", res.After.Revision, store.URI(registry.HistoryKey(res.Model, res.After.Revision)), events.TopicModelLifecycle)
	}
	for _, r := range res.Stopped {
		fmt.Fprintf(out, "stopped retraining run %s (stage %s, version %s) with its rollback signal\n  %s\n", r.WorkflowID, orDash(r.Stage), orDash(r.Version), workflowLink(t, r.WorkflowID))
	}
	for _, n := range res.Notes {
		fmt.Fprintf(out, "note: %s\n", n)
	}
	fmt.Fprintf(out, "workflow ModelChange %s (run %s)\n  %s\n", id, runID, link)
	return unpublished
}
