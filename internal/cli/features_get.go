package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

type featuresGetOptions struct {
	file      string
	user      string
	items     []string
	asJSON    bool
	keyPrefix string
	timeout   time.Duration
	timeZone  string
	sessionID string
	surface   string
	now       time.Time // the request time; time.Now when zero
}

func newFeaturesGetCmd() *cobra.Command {
	var o featuresGetOptions
	cmd := &cobra.Command{
		Use:   "get --user U [--items I1,I2,...]",
		Short: "Show the online features of a user and some items: value, the lane that served it, any fallback",
		Long: `get reads the features of one user, a request and the given items through the
online store, exactly as serving assembles them (features/online, docs/adr/007):
the current batch snapshot of every item group (from S3), the user's batch
records and nearline values (from Redis), the request lane, and the fallback
cascade. For every feature it prints the value, the lane that served it
(batch, nearline, request, computed, or default), any fallback (a late
snapshot, a stale nearline value replaced by its batch twin, an expired or
missing value, the store unavailable), when the stored value was computed and
the snapshot version, followed by the per-group summary.

Only the given items are loaded from the item snapshots. The request features
are computed for the current time (--time-zone, --session-id and --surface
describe the request).`,
		Example: `  adaptrec features get --user u42
  adaptrec features get --user u42 --items i1,i7 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.user == "" {
				return fmt.Errorf("--user is required")
			}
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			return featuresGet(cmd.Context(), cmd.OutOrStdout(), cfg, o)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&o.file, "file", "", fileFlagHelp)
	fs.StringVar(&o.user, "user", "", "user id (required)")
	fs.StringSliceVar(&o.items, "items", nil, "item ids, comma-separated")
	fs.BoolVar(&o.asJSON, "json", false, "print one JSON object instead of a table")
	fs.StringVar(&o.keyPrefix, "key-prefix", "", "Redis key prefix of the online store; default the config's features.key_prefix")
	fs.DurationVar(&o.timeout, "timeout", time.Second, "how long the user's Redis read may take before it counts as unavailable")
	fs.StringVar(&o.timeZone, "time-zone", "", "IANA time zone of the request, for the request features")
	fs.StringVar(&o.sessionID, "session-id", "", "session id of the request")
	fs.StringVar(&o.surface, "surface", "", "surface of the request (home, item_page)")
	return cmd
}

// featuresGetReport is what `features get --json` prints.
type featuresGetReport struct {
	User           string             `json:"user"`
	Items          []string           `json:"items"`
	Degraded       bool               `json:"degraded"`
	DegradedReason string             `json:"degraded_reason,omitempty"`
	Versions       map[string]string  `json:"versions"`
	Warnings       []string           `json:"warnings,omitempty"`
	Values         []featureGetValue  `json:"values"`
	Groups         []featureGetGroup  `json:"groups"`
	UnknownItems   int                `json:"unknown_items"`
	SchemaHash     string             `json:"schema_hash"`
	Sources        map[string]int     `json:"sources"`
	Fallbacks      map[string]int     `json:"fallbacks,omitempty"`
	Context        featuresGetContext `json:"request"`
}

type featuresGetContext struct {
	Time      time.Time `json:"time"`
	TimeZone  string    `json:"time_zone,omitempty"`
	SessionID string    `json:"session_id,omitempty"`
	Surface   string    `json:"surface,omitempty"`
}

type featureGetValue struct {
	Entity    string     `json:"entity"`
	ID        string     `json:"id,omitempty"`
	Feature   string     `json:"feature"`
	Group     string     `json:"group"`
	Value     any        `json:"value"`
	Lane      string     `json:"lane"`
	Source    string     `json:"source"`
	Fallback  string     `json:"fallback,omitempty"`
	UpdatedAt *time.Time `json:"updated_at,omitempty"`
	Version   string     `json:"version,omitempty"`
}

type featureGetGroup struct {
	Group   string           `json:"group"`
	Entity  string           `json:"entity"`
	Lane    string           `json:"lane"`
	Version string           `json:"version,omitempty"`
	Main    string           `json:"served_by"`
	Stale   bool             `json:"stale"`
	Counts  map[string]int32 `json:"counts"`
}

func featuresGet(ctx context.Context, out io.Writer, cfg config.Config, o featuresGetOptions) error {
	if o.keyPrefix == "" {
		o.keyPrefix = cfg.Features.KeyPrefix
	}
	fs, err := features.Load(definitionsFile(o.file, cfg))
	if err != nil {
		return err
	}
	st, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return err
	}
	rdb := online.NewClient(cfg.Redis)
	defer rdb.Close()
	wanted := map[string]bool{}
	for _, id := range o.items {
		wanted[id] = true
	}
	store, err := online.New(fs, rdb, online.ObjectSnapshots{Store: st}, online.Options{
		KeyPrefix:       o.keyPrefix,
		UserReadTimeout: o.timeout,
		ItemFilter:      func(id string) bool { return wanted[id] },
	})
	if err != nil {
		return err
	}
	rep := featuresGetReport{User: o.user, Items: o.items, SchemaHash: fs.SchemaHash()}
	if rep.Items == nil {
		rep.Items = []string{}
	}
	// What cannot be loaded is reported and served as serving would: from
	// defaults.
	if err := store.Refresh(ctx); err != nil {
		rep.Warnings = append(rep.Warnings, err.Error())
	}
	if len(o.items) > 0 {
		if err := store.RefreshNearline(ctx); err != nil {
			rep.Warnings = append(rep.Warnings, err.Error())
		}
	}
	now := o.now
	if now.IsZero() {
		now = time.Now()
	}
	rc := features.RequestContext{Time: now, TimeZone: o.timeZone, SessionID: o.sessionID, Surface: o.surface}
	rep.Context = featuresGetContext{Time: now.UTC(), TimeZone: o.timeZone, SessionID: o.sessionID, Surface: o.surface}
	ex, err := store.Explain(ctx, o.user, o.items, online.Request{Context: rc, Now: now})
	if err != nil {
		return err
	}
	rep.Degraded, rep.DegradedReason, rep.UnknownItems = ex.Result.Degraded, ex.Result.DegradedReason, ex.Result.UnknownItems
	rep.Versions = store.Versions()
	rep.Sources, rep.Fallbacks = map[string]int{}, map[string]int{}
	for _, e := range ex.Values {
		v := featureGetValue{
			Entity: e.Entity.String(), ID: e.EntityID, Feature: e.Feature.Name, Group: e.Feature.Group,
			Value: jsonValue(e.Feature, e.Value), Lane: e.Source.Lane(), Source: e.Source.String(),
			Fallback: e.Source.Fallback(), Version: e.Version,
		}
		if !e.UpdatedAt.IsZero() {
			t := e.UpdatedAt
			v.UpdatedAt = &t
		}
		rep.Values = append(rep.Values, v)
		rep.Sources[v.Source]++
		if e.Source.IsFallback() {
			rep.Fallbacks[v.Source]++
		}
	}
	for _, g := range ex.Result.Groups {
		fg := featureGetGroup{Group: g.Group, Entity: g.Entity.String(), Lane: g.Lane.String(), Version: g.Version,
			Main: g.Main().String(), Stale: g.Stale, Counts: map[string]int32{}}
		total := int32(0)
		for s, n := range g.Counts {
			if n > 0 {
				fg.Counts[online.Source(s).String()] = n
				total += n
			}
		}
		if total == 0 {
			continue
		}
		rep.Groups = append(rep.Groups, fg)
	}
	if o.asJSON {
		b, err := json.Marshal(rep)
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	return printFeaturesGet(out, rep)
}

func printFeaturesGet(out io.Writer, rep featuresGetReport) error {
	fmt.Fprintf(out, "user %s, %d item(s), request at %s\n", rep.User, len(rep.Items), rep.Context.Time.Format(time.RFC3339))
	if rep.Degraded {
		fmt.Fprintf(out, "DEGRADED: the user's stored features could not be read (%s): they show their defaults\n", rep.DegradedReason)
	}
	for _, w := range rep.Warnings {
		fmt.Fprintf(out, "warning: %s\n", w)
	}
	if rep.UnknownItems > 0 {
		fmt.Fprintf(out, "%d item(s) are in no item snapshot or nearline cache: their features show defaults\n", rep.UnknownItems)
	}
	fmt.Fprintln(out)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENTITY\tID\tFEATURE\tVALUE\tLANE\tFALLBACK\tUPDATED\tVERSION")
	for _, v := range rep.Values {
		updated := "-"
		if v.UpdatedAt != nil {
			updated = v.UpdatedAt.Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Entity, dashEmpty(v.ID), v.Feature, textValue(v.Value),
			v.Lane, dashEmpty(v.Fallback), updated, dashEmpty(v.Version))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out)
	tw = tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tENTITY\tLANE\tVERSION\tSERVED BY\tSTALE\tVALUES BY SOURCE")
	for _, g := range rep.Groups {
		var parts []string
		for _, s := range slices.Sorted(maps.Keys(g.Counts)) {
			parts = append(parts, fmt.Sprintf("%s=%d", s, g.Counts[s]))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%s\n", g.Group, g.Entity, g.Lane, dashEmpty(g.Version), g.Main, g.Stale, strings.Join(parts, " "))
	}
	return tw.Flush()
}

// jsonValue is a value as JSON shows it: a number, a list or an object.
func jsonValue(f *features.Feature, v features.Value) any {
	switch f.Type.Kind {
	case features.KindFloat:
		return v.Float
	case features.KindInt:
		return v.Int
	case features.KindVector:
		return v.Vector
	case features.KindList:
		if v.List == nil {
			return []string{}
		}
		return v.List
	}
	if v.Map == nil {
		return map[string]float64{}
	}
	return v.Map
}

// textValue formats a value for the table.
func textValue(v any) string {
	switch x := v.(type) {
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case int64:
		return strconv.FormatInt(x, 10)
	case []float32:
		parts := make([]string, len(x))
		for i, c := range x {
			parts[i] = strconv.FormatFloat(float64(c), 'g', 4, 32)
		}
		return "[" + strings.Join(parts, " ") + "]"
	case []string:
		return "[" + strings.Join(x, " ") + "]"
	case map[string]float64:
		parts := make([]string, 0, len(x))
		for _, k := range slices.Sorted(maps.Keys(x)) {
			parts = append(parts, k+":"+strconv.FormatFloat(x[k], 'g', -1, 64))
		}
		return "{" + strings.Join(parts, " ") + "}"
	}
	return fmt.Sprint(v)
}

func dashEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
