package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/activities"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/registry"
)

// modelsChangeOptions are the flags of the commands that change aliases.
type modelsChangeOptions struct {
	expect string
	reason string
	actor  string
	file   string
	// direct applies the change from this process, without Temporal.
	direct bool
}

func (o *modelsChangeOptions) addFlags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&o.expect, "expect-production", "", `fail unless production is this version ("none": no production yet): guards against acting on a state someone else changed`)
	f.StringVar(&o.reason, "reason", "", "why: recorded in the history and the lifecycle event")
	f.StringVar(&o.actor, "actor", defaultActor(), "who makes the change, for the history")
	f.StringVar(&o.file, "file", defaultFeaturesFile, "feature definitions serving uses: the version's schema must be satisfiable by them")
}

// addDirectFlag adds --direct to the commands that run their change as
// the ModelChange workflow.
func (o *modelsChangeOptions) addDirectFlag(cmd *cobra.Command) {
	cmd.Flags().BoolVar(&o.direct, "direct", false, "apply the change through the registry from this process, without Temporal: the emergency path when Temporal or its workers are down")
	cmd.Flags().Lookup("file").Usage += " (through the workflow: the worker's features.file unless --file is given)"
}

// modelsWorkflowHelp explains the workflow path of promote and rollback.
const modelsWorkflowHelp = `

The change runs as the ModelChange workflow on the task queue ` + activities.TaskQueueDefault + `: a worker
reads the aliases, resolves an alias argument on them and applies the change by
compare-and-swap on that revision, so the change has a workflow id, a history and
a Temporal UI link (config key temporal.ui_url), which the command prints after
the change. The version is checked against the worker's feature definitions
(its features.file), or against --file when given. --direct applies the change
from this process through the registry, without Temporal: the emergency path
when Temporal or its workers are down (the change is recorded and announced the
same way, but has no workflow).`

func (o *modelsChangeOptions) check() error {
	var errs []error
	if e := o.expect; e != "" && e != registry.None && !registry.IsVersion(e) {
		errs = append(errs, fmt.Errorf("--expect-production %q is neither a version (<yyyymmddThhmmssZ>-<8 hex digits>) nor %q", e, registry.None))
	}
	if strings.TrimSpace(o.actor) == "" {
		errs = append(errs, errors.New("--actor is empty: say who makes the change"))
	}
	return errors.Join(errs...)
}

// promoteTargets are the values of promote --to.
var promoteTargets = []string{registry.AliasProduction, registry.AliasShadow, registry.AliasCanary}

func newModelsPromoteCmd(o *modelsOptions) *cobra.Command {
	var co modelsChangeOptions
	var to string
	var weight float64
	cmd := &cobra.Command{
		Use:   "promote <version|alias> [--to production|shadow|canary] [--weight W]",
		Short: "Give a version an alias: production (the old one becomes previous), shadow, or canary with a traffic weight",
		Long: `promote gives a registered version an alias, by compare-and-swap on the model's
aliases: if they change between reading and writing (another promotion), nothing
is changed and the command fails naming what they are now; read them again and
decide again. --expect-production makes the change conditional on the production
version you looked at.

  --to production  the version serves all traffic not in the canary; the old
                   production becomes previous (the target of 'models rollback');
                   the version stops being canary or shadow.
  --to canary      the version serves --weight (in (0, 1]) of the traffic.
  --to shadow      the version scores live traffic without serving it.

The version is checked first: its manifest, every artifact's checksum, and its
input schema against the feature definitions (--file). The change is recorded in
the history and announced on adaptrec.model-lifecycle.v1. If the announcement
fails the change stands; running the same command again announces it.` + modelsWorkflowHelp,
		Example: `  adaptrec models promote 20261122T100000Z-3583d1ca --to canary --weight 0.05 --reason "retrain 2026-11-22"
  adaptrec models promote canary --expect-production 20261115T100000Z-0a1b2c3d --reason "canary ctr +2%"
  adaptrec models promote 20261122T100000Z-3583d1ca --to shadow`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch, err := promoteChange(args[0], to, weight, cmd.Flags().Changed("weight"), co)
			if err != nil {
				return err
			}
			if co.direct {
				return modelsChange(cmd, *o, co, ch, args[0])
			}
			return modelsChangeWorkflow(cmd, *o, co, ch, args[0])
		},
	}
	cmd.Flags().StringVar(&to, "to", registry.AliasProduction, "alias to give: production, shadow or canary")
	cmd.Flags().Float64Var(&weight, "weight", 0, "share of traffic for --to canary, in (0, 1] (0.05 = 5%)")
	co.addFlags(cmd)
	co.addDirectFlag(cmd)
	return cmd
}

// promoteChange checks promote's arguments, naming every bad one; the
// version of the change is resolved later (ref may be an alias).
func promoteChange(ref, to string, weight float64, weightSet bool, co modelsChangeOptions) (registry.Change, error) {
	var errs []error
	if err := checkRef("version", ref); err != nil {
		errs = append(errs, err)
	}
	ch := registry.Change{ExpectProduction: co.expect, Actor: co.actor, Reason: co.reason}
	switch to {
	case registry.AliasProduction:
		ch.Action = registry.ActionPromote
	case registry.AliasShadow:
		ch.Action = registry.ActionShadow
	case registry.AliasCanary:
		ch.Action = registry.ActionCanary
		switch {
		case !weightSet:
			errs = append(errs, errors.New("--to canary needs --weight, the share of traffic in (0, 1] (0.05 = 5%)"))
		case !(weight > 0 && weight <= 1):
			errs = append(errs, fmt.Errorf("--weight %v is not in (0, 1]: it is the canary's share of traffic (0.05 = 5%%)", weight))
		default:
			ch.Weight = weight
		}
	default:
		errs = append(errs, fmt.Errorf("--to %q is not one of %s", to, strings.Join(promoteTargets, ", ")))
	}
	if weightSet && to != registry.AliasCanary {
		errs = append(errs, fmt.Errorf("--weight %v is only for --to canary (not --to %s)", weight, to))
	}
	if err := co.check(); err != nil {
		errs = append(errs, err)
	}
	return ch, errors.Join(errs...)
}

func newModelsRollbackCmd(o *modelsOptions) *cobra.Command {
	var co modelsChangeOptions
	cmd := &cobra.Command{
		Use:   "rollback",
		Short: "Make the previous version production again",
		Long: `rollback makes the model's previous version production again, by
compare-and-swap (it fails, changing nothing, if the aliases change meanwhile or
production is not --expect-production), records it in the history and announces
it on adaptrec.model-lifecycle.v1 (stage ROLLED_BACK, model_version the version
now in production, previous_version the one rolled back from).

The rolled-back version loses every alias: previous becomes empty, so a second
rollback fails instead of returning to the version just taken out. It stays
registered; 'models promote <version>' brings it back.` + modelsWorkflowHelp + `

Through the workflow, a rollback also stops the model's running retraining runs
with their rollback signal, after the rollback is made: each decided on the
production version just rolled back from, so its next alias change would fail;
stopped, it takes its version off shadow and canary, and a run watching its own
cutover finds production already rolled back and leaves it (production is never
rolled back twice). The command names the runs it stopped. With --direct they
are not signaled: they fail at their next alias change, or stop them with
'adaptrec pipeline abort'.`,
		Example: `  adaptrec models rollback --reason "ctr dropped 8% after promotion"
  adaptrec models rollback --model ranker --expect-production 20261122T100000Z-3583d1ca`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := co.check(); err != nil {
				return err
			}
			ch := registry.Change{Action: registry.ActionRollback, ExpectProduction: co.expect, Actor: co.actor, Reason: co.reason}
			if co.direct {
				return modelsChange(cmd, *o, co, ch, "")
			}
			return modelsChangeWorkflow(cmd, *o, co, ch, "")
		},
	}
	co.addFlags(cmd)
	co.addDirectFlag(cmd)
	return cmd
}

func newModelsClearCmd(o *modelsOptions) *cobra.Command {
	var co modelsChangeOptions
	cmd := &cobra.Command{
		Use:   "clear canary|shadow",
		Short: "End the canary or the shadow",
		Long: `clear removes the canary (its traffic goes back to production) or the shadow,
by compare-and-swap, records it in the history and announces it on
adaptrec.model-lifecycle.v1 (stage RETIRED for the version that lost the alias).
Clearing an alias that is not set changes nothing.`,
		Example: `  adaptrec models clear canary --reason "guardrail: latency p99"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ch := registry.Change{ExpectProduction: co.expect, Actor: co.actor, Reason: co.reason}
			var errs []error
			switch args[0] {
			case registry.AliasCanary:
				ch.Action = registry.ActionClearCanary
			case registry.AliasShadow:
				ch.Action = registry.ActionClearShadow
			default:
				errs = append(errs, fmt.Errorf("clear %q: only canary and shadow can be cleared (production changes by promote and rollback)", args[0]))
			}
			if err := errors.Join(append(errs, co.check())...); err != nil {
				return err
			}
			return modelsChange(cmd, *o, co, ch, "")
		},
	}
	co.addFlags(cmd)
	return cmd
}

// modelsChange connects to the registry, resolves ref (an alias or a
// version, for promote) and applies ch.
func modelsChange(cmd *cobra.Command, o modelsOptions, co modelsChangeOptions, ch registry.Change, ref string) error {
	ctx := cmd.Context()
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	fs, err := loadServingFeatures(cmd, co.file)
	if err != nil {
		return err
	}
	c, closeFn, err := modelsWriter(ctx, cfg, fs, cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	defer closeFn()
	return modelsApply(ctx, cmd.OutOrStdout(), c, o, ch, ref)
}

func modelsApply(ctx context.Context, out io.Writer, c *registry.Client, o modelsOptions, ch registry.Change, ref string) error {
	model, err := resolveModel(ctx, c, o.model)
	if err != nil {
		return err
	}
	// An alias is resolved on the state the change is applied to, so
	// "promote canary" promotes the canary this command saw or nothing.
	before, err := c.Aliases(ctx, model)
	if err != nil {
		return err
	}
	if v, isAlias := before.Get(ref); isAlias {
		if v == "" {
			return fmt.Errorf("%w: %s has no %s version (revision %d)", registry.ErrNotFound, model, ref, before.Revision)
		}
		ch.Version = v
	} else if ref != "" {
		ch.Version = ref
	}
	after, err := c.ApplyFrom(ctx, before, ch)
	if err != nil && !errors.Is(err, registry.ErrUnpublished) {
		return err
	}
	changed := after.Revision != before.Revision
	if o.asJSON {
		if jerr := writeJSON(out, struct {
			Model   string           `json:"model"`
			Changed bool             `json:"changed"`
			Aliases registry.Aliases `json:"aliases"`
			Topic   string           `json:"topic"`
		}{model, changed, after, events.TopicModelLifecycle}); jerr != nil {
			return jerr
		}
		return err
	}
	fmt.Fprintln(out, describeChange(model, ch, before, after, changed))
	if err == nil && changed {
		fmt.Fprintf(out, "revision %d recorded in %s; announced on %s\n", after.Revision, c.Store.URI(registry.HistoryKey(model, after.Revision)), events.TopicModelLifecycle)
	}
	return err
}

// describeChange says in one line what a change did.
func describeChange(model string, ch registry.Change, before, after registry.Aliases, changed bool) string {
	if !changed {
		switch ch.Action {
		case registry.ActionClearCanary, registry.ActionClearShadow:
			return fmt.Sprintf("%s: no %s to clear (revision %d); nothing changed", model, strings.TrimPrefix(string(ch.Action), "clear-"), after.Revision)
		case registry.ActionCanary:
			return fmt.Sprintf("%s: %s is already canary at %s (revision %d); nothing changed", model, ch.Version, percent(after.CanaryWeight), after.Revision)
		}
		alias := map[registry.Action]string{registry.ActionPromote: registry.AliasProduction, registry.ActionShadow: registry.AliasShadow}[ch.Action]
		return fmt.Sprintf("%s: %s is already %s (revision %d); nothing changed", model, ch.Version, alias, after.Revision)
	}
	switch ch.Action {
	case registry.ActionPromote:
		return fmt.Sprintf("%s: %s is production (previous %s)", model, after.Production, orDash(after.Previous))
	case registry.ActionRollback:
		return fmt.Sprintf("%s: rolled back from %s to %s; %s is no longer referenced by any alias ('models promote %s' brings it back)",
			model, before.Production, after.Production, before.Production, before.Production)
	case registry.ActionShadow:
		return fmt.Sprintf("%s: %s is shadow (replacing %s)", model, after.Shadow, orDash(before.Shadow))
	case registry.ActionCanary:
		return fmt.Sprintf("%s: %s is canary at %s of traffic (was %s)", model, after.Canary, percent(after.CanaryWeight), orDash(canaryLabel(before)))
	case registry.ActionClearCanary:
		return fmt.Sprintf("%s: canary %s cleared; production %s serves all traffic", model, canaryLabel(before), orDash(after.Production))
	case registry.ActionClearShadow:
		return fmt.Sprintf("%s: shadow %s cleared", model, before.Shadow)
	}
	return fmt.Sprintf("%s: %s applied", model, ch.Action)
}
