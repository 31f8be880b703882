package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/registry"
)

func init() { register(newModelsCmd) }

// modelsOptions are the flags every models command shares.
type modelsOptions struct {
	model  string
	asJSON bool
}

func newModelsCmd() *cobra.Command {
	var o modelsOptions
	cmd := &cobra.Command{
		Use:   "models",
		Short: "The model registry: versions, aliases (production, previous, shadow, canary), promotion and rollback",
		Long: `models reads and changes the model registry on S3 (models/<model>/ under the
configured bucket and prefix; decisions: docs/adr/011). Versions are immutable and
registered by training; the aliases serving reads (production, previous, shadow,
canary with a traffic weight) change only by compare-and-swap, so of two
concurrent changes exactly one wins and the other fails naming what the aliases
are now. Every change is recorded in the model's history with who made it and
why, and announced on adaptrec.model-lifecycle.v1.

--model may be left out while the registry holds one model.`,
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if o.model == "" {
				return nil
			}
			if err := registry.CheckModel(o.model); err != nil {
				return fmt.Errorf("--model: %w", err)
			}
			return nil
		},
	}
	f := cmd.PersistentFlags()
	f.StringVar(&o.model, "model", "", "model name; default the only model in the registry")
	f.BoolVar(&o.asJSON, "json", false, "print one JSON object on one line")
	cmd.AddCommand(newModelsListCmd(&o), newModelsShowCmd(&o), newModelsHistoryCmd(&o),
		newModelsPromoteCmd(&o), newModelsRollbackCmd(&o), newModelsClearCmd(&o))
	return cmd
}

// modelsReader opens the registry for reading.
func modelsReader(ctx context.Context) (*registry.Client, error) {
	cfg, err := loadConfig()
	if err != nil {
		return nil, err
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return nil, err
	}
	return &registry.Client{Store: store}, nil
}

// modelsWriter opens the registry for changes: S3, the Kafka producer the
// lifecycle events go to, and the feature definitions versions are
// checked against. close flushes the producer.
func modelsWriter(ctx context.Context, cfg config.Config, fs *features.FeatureSet, logs io.Writer) (*registry.Client, func(), error) {
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return nil, nil, err
	}
	producer, err := events.NewProducer(cfg.Kafka, events.ProducerOptions{})
	if err != nil {
		return nil, nil, err
	}
	c := &registry.Client{
		Store: store, Events: producer, Features: fs,
		Logf: func(format string, args ...any) { fmt.Fprintf(logs, format+"\n", args...) },
	}
	return c, func() { producer.Close() }, nil
}

// resolveModel returns --model, or the only model in the registry.
func resolveModel(ctx context.Context, c *registry.Client, flag string) (string, error) {
	if flag != "" {
		if err := registry.CheckModel(flag); err != nil {
			return "", fmt.Errorf("--model: %w", err)
		}
		return flag, nil
	}
	models, err := c.Models(ctx)
	if err != nil {
		return "", err
	}
	switch len(models) {
	case 0:
		return "", fmt.Errorf("%w: no models under %s", registry.ErrNotFound, c.Store.URI(registry.Root))
	case 1:
		return models[0], nil
	}
	return "", fmt.Errorf("the registry holds the models %s: choose one with --model", strings.Join(models, ", "))
}

// checkRef checks that a command-line argument can name a version: a
// version id or an alias name.
func checkRef(what, ref string) error {
	if registry.IsVersion(ref) || slices.Contains(registry.AliasNames, ref) {
		return nil
	}
	return fmt.Errorf("%s %q is neither a version (<yyyymmddThhmmssZ>-<8 hex digits>) nor an alias (%s)", what, ref, strings.Join(registry.AliasNames, ", "))
}

// defaultActor names the person running the command, for the history.
func defaultActor() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	if host, err := os.Hostname(); err == nil && host != "" {
		name += "@" + host
	}
	return "cli:" + name
}

func writeJSON(out io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	_, err = fmt.Fprintf(out, "%s\n", b)
	return err
}

// modelVersion is a version as list and show print it.
type modelVersion struct {
	registry.Manifest
	// Aliases are the aliases that name the version.
	Aliases []string `json:"aliases"`
	URI     string   `json:"uri"`
}

// modelListing is one model as list prints it.
type modelListing struct {
	Model   string           `json:"model"`
	URI     string           `json:"uri"`
	Aliases registry.Aliases `json:"aliases"`
	// Versions are newest first.
	Versions []modelVersion `json:"versions"`
}

func newModelsListCmd(o *modelsOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the registered versions of every model (or of --model) with their aliases",
		Long: `list prints each model's aliases (revision, production, previous, canary with
its weight, shadow, and the last change) and its versions, newest first, with the
aliases naming them, training set, code version and metrics. A version whose
registration did not finish (no manifest) is not listed: it does not exist.`,
		Example: `  adaptrec models list
  adaptrec models list --model ranker --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := modelsReader(cmd.Context())
			if err != nil {
				return err
			}
			return modelsList(cmd.Context(), cmd.OutOrStdout(), c, *o)
		},
	}
}

func modelsList(ctx context.Context, out io.Writer, c *registry.Client, o modelsOptions) error {
	models := []string{o.model}
	if o.model == "" {
		var err error
		if models, err = c.Models(ctx); err != nil {
			return err
		}
	}
	listings := make([]modelListing, 0, len(models))
	for _, m := range models {
		al, err := c.Aliases(ctx, m)
		if err != nil {
			return err
		}
		vs, err := c.Versions(ctx, m)
		if err != nil {
			return err
		}
		if len(vs) == 0 && al.Revision == 0 {
			return fmt.Errorf("%w: model %s has no versions under %s", registry.ErrNotFound, m, c.Store.URI(registry.ModelPrefix(m)))
		}
		l := modelListing{Model: m, URI: c.Store.URI(registry.ModelPrefix(m)), Aliases: al, Versions: make([]modelVersion, 0, len(vs))}
		for i := len(vs) - 1; i >= 0; i-- {
			l.Versions = append(l.Versions, versionEntry(c, al, vs[i]))
		}
		listings = append(listings, l)
	}
	if o.asJSON {
		return writeJSON(out, struct {
			URI    string         `json:"uri"`
			Models []modelListing `json:"models"`
		}{c.Store.URI(registry.Root), listings})
	}
	if len(listings) == 0 {
		fmt.Fprintf(out, "no models under %s\n", c.Store.URI(registry.Root))
		return nil
	}
	for i, l := range listings {
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "%s (%s): %d versions; %s\n", l.Model, l.URI, len(l.Versions), aliasesSummary(l.Aliases))
		tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tCREATED\tALIASES\tTRAINING SET\tCODE\tMETRICS")
		for _, v := range l.Versions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", v.Version, v.CreatedAt.Format(time.RFC3339), orDash(aliasLabels(l.Aliases, v.Aliases)),
				v.TrainingSet, v.CodeVersion, formatMetrics(v.Metrics))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

func versionEntry(c *registry.Client, al registry.Aliases, m registry.Manifest) modelVersion {
	aliases := al.Of(m.Version)
	if aliases == nil {
		aliases = []string{}
	}
	return modelVersion{Manifest: m, Aliases: aliases, URI: c.Store.URI(registry.VersionPrefix(m.Model, m.Version))}
}

// aliasesSummary describes a model's aliases in one line.
func aliasesSummary(a registry.Aliases) string {
	if a.Revision == 0 {
		return "no aliases yet"
	}
	s := fmt.Sprintf("revision %d: production %s, previous %s, canary %s, shadow %s", a.Revision,
		orDash(a.Production), orDash(a.Previous), orDash(canaryLabel(a)), orDash(a.Shadow))
	if ch := a.Change; ch != nil {
		s += fmt.Sprintf("; last change %s %s by %s at %s", ch.Action, orDash(ch.Version), ch.Actor, ch.At.Format(time.RFC3339))
		if ch.Reason != "" {
			s += ": " + ch.Reason
		}
	}
	return s
}

func canaryLabel(a registry.Aliases) string {
	if a.Canary == "" {
		return ""
	}
	return fmt.Sprintf("%s (%s)", a.Canary, percent(a.CanaryWeight))
}

// aliasLabels joins alias names, with the canary's weight.
func aliasLabels(a registry.Aliases, names []string) string {
	labels := make([]string, len(names))
	for i, n := range names {
		labels[i] = n
		if n == registry.AliasCanary {
			labels[i] += " " + percent(a.CanaryWeight)
		}
	}
	return strings.Join(labels, ",")
}

func percent(w float64) string {
	return strconv.FormatFloat(100*w, 'f', -1, 64) + "%"
}

func formatMetrics(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + strconv.FormatFloat(m[k], 'g', 6, 64)
	}
	return strings.Join(parts, " ")
}

func newModelsShowCmd(o *modelsOptions) *cobra.Command {
	var verify bool
	cmd := &cobra.Command{
		Use:   "show <version|alias>",
		Short: "Print a version's manifest: provenance, schema, metrics, artifacts and aliases",
		Long: `show prints one version of a model, named by its id or by an alias
(production, previous, shadow, canary): the aliases naming it, when and by whom it
was registered, training set, code version, feature schema hash and inputs,
parameters, metrics and every artifact with its size and SHA-256. With --verify
it reads every artifact and checks it against the manifest (exit status 1 naming
each mismatch).`,
		Example: `  adaptrec models show production
  adaptrec models show 20261122T100000Z-3583d1ca --model ranker --verify --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkRef("version", args[0]); err != nil {
				return err
			}
			c, err := modelsReader(cmd.Context())
			if err != nil {
				return err
			}
			return modelsShow(cmd.Context(), cmd.OutOrStdout(), c, *o, args[0], verify)
		},
	}
	cmd.Flags().BoolVar(&verify, "verify", false, "read every artifact and check its size and SHA-256 against the manifest")
	return cmd
}

func modelsShow(ctx context.Context, out io.Writer, c *registry.Client, o modelsOptions, ref string, verify bool) error {
	model, err := resolveModel(ctx, c, o.model)
	if err != nil {
		return err
	}
	version, err := c.Resolve(ctx, model, ref)
	if err != nil {
		return err
	}
	m, err := c.Get(ctx, model, version)
	if err != nil {
		return err
	}
	al, err := c.Aliases(ctx, model)
	if err != nil {
		return err
	}
	var verifyErr error
	if verify {
		verifyErr = c.Verify(ctx, m)
	}
	v := versionEntry(c, al, m)
	if o.asJSON {
		res := struct {
			modelVersion
			Verified *bool `json:"verified,omitempty"`
		}{modelVersion: v}
		if verify {
			ok := verifyErr == nil
			res.Verified = &ok
		}
		if err := writeJSON(out, res); err != nil {
			return err
		}
		return verifyErr
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	row("model", m.Model)
	row("version", m.Version)
	row("aliases", orDash(aliasLabels(al, v.Aliases)))
	row("uri", v.URI)
	row("created", m.CreatedAt.Format(time.RFC3339Nano))
	by := m.RegisteredBy
	if m.Reason != "" {
		by += ": " + m.Reason
	}
	row("registered by", by)
	row("training set", m.TrainingSet)
	row("code version", m.CodeVersion)
	row("schema hash", m.SchemaHash)
	row("inputs", fmt.Sprintf("%d features, %d values per row: %s", len(m.Schema.Features), m.InputWidth, strings.Join(m.Schema.Names(), ", ")))
	params := make([]string, 0, len(m.Parameters))
	for k, v := range m.Parameters {
		params = append(params, k+"="+v)
	}
	slices.Sort(params)
	row("parameters", orDash(strings.Join(params, " ")))
	row("metrics", formatMetrics(m.Metrics))
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ARTIFACT\tROLE\tBYTES\tSHA256")
	for _, f := range m.Artifacts {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", f.Name, f.Role, f.Bytes, f.SHA256)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if verify && verifyErr == nil {
		fmt.Fprintf(out, "\nverified: %d artifacts match the manifest\n", len(m.Artifacts))
	}
	return verifyErr
}

func newModelsHistoryCmd(o *modelsOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "history",
		Short: "Print every change of a model's aliases: when, what, who and why",
		Long: `history prints every revision of a model's aliases, oldest first: when it was
made, the action (promote, rollback, shadow, canary, clear-shadow, clear-canary),
the version it gave an alias to and the one that lost it, the actor and reason,
and the production version it left.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := modelsReader(cmd.Context())
			if err != nil {
				return err
			}
			return modelsHistory(cmd.Context(), cmd.OutOrStdout(), c, *o)
		},
	}
}

func modelsHistory(ctx context.Context, out io.Writer, c *registry.Client, o modelsOptions) error {
	model, err := resolveModel(ctx, c, o.model)
	if err != nil {
		return err
	}
	hist, err := c.History(ctx, model)
	if err != nil {
		return err
	}
	if o.asJSON {
		if hist == nil {
			hist = []registry.Aliases{}
		}
		return writeJSON(out, struct {
			Model     string             `json:"model"`
			Revisions []registry.Aliases `json:"revisions"`
		}{model, hist})
	}
	if len(hist) == 0 {
		fmt.Fprintf(out, "%s: no alias changes yet\n", model)
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REVISION\tAT\tACTION\tVERSION\tREPLACED\tACTOR\tREASON\tPRODUCTION")
	for _, h := range hist {
		ch := h.Change
		action := string(ch.Action)
		if ch.Action == registry.ActionCanary {
			action += " " + percent(ch.Weight)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Revision, ch.At.Format(time.RFC3339), action, orDash(ch.Version),
			orDash(ch.Replaced), ch.Actor, orDash(ch.Reason), orDash(h.Production))
	}
	return tw.Flush()
}

// loadServingFeatures loads the definitions a version must be servable
// with. The default file is optional (the CLI may run outside a checkout);
// a file named with --file is not.
func loadServingFeatures(cmd *cobra.Command, file string) (*features.FeatureSet, error) {
	if !cmd.Flags().Changed("file") {
		if _, err := os.Stat(file); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(cmd.ErrOrStderr(), "note: %s not found: the version's feature schema is not checked (give --file)\n", file)
			return nil, nil
		}
	}
	fs, err := features.Load(file)
	if err != nil {
		return nil, fmt.Errorf("--file: %w", err)
	}
	return fs, nil
}
