package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

type featuresTrainingSetOptions struct {
	file        string
	from, to    string
	id          string
	features    []string
	attribution time.Duration
	lag         time.Duration
	lookback    time.Duration
	rowsPerFile int
	asJSON      bool
	now         time.Time
}

func newFeaturesTrainingSetCmd() *cobra.Command {
	var o featuresTrainingSetOptions
	cmd := &cobra.Command{
		Use:   "training-set --from TIME --to TIME [--id ID] [--features F,...]",
		Short: "Build a point-in-time training set from the event log and the snapshot history",
		Long: `training-set joins every impression (ACTION_IMPRESSION) with event time in
[--from, --to) of the archived interactions with the feature values as of its
event time — the batch snapshot each group had then (never a later one), and
the request lane with the user's session replayed from the log — and labels it
1 when the same user clicks the same item in the same session within
--attribution (docs/adr/006). Watches and purchases in that window are extra
columns. Rows are flattened exactly as serving flattens them, into Parquet parts
under training/<id>/ on S3, and manifest.json, written last, records the model
schema (schema hash included), the label rule, which snapshot served which
event-time range, and the features that hold their defaults and why.

The log is read from --state-lookback before --from (to replay the users'
sessions and last actions) to --attribution after --to (for the late clicks).
Progress goes to stderr; the summary (or with --json one JSON object on one
line) to stdout. 'training-set ls' lists the training sets built so far.`,
		Example: `  adaptrec features training-set --from 2026-11-01 --to 2026-11-15
  adaptrec features training-set --from -7d --to -1h --id ctr-week46 --availability-lag 2h --json
  adaptrec features training-set ls`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			o.now = time.Now()
			return featuresTrainingSet(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.file, "file", "", fileFlagHelp)
	f.StringVar(&o.from, "from", "", "start of the impressions' event-time range, inclusive (required): RFC 3339, a UTC date, now, or relative (-7d)")
	f.StringVar(&o.to, "to", "", "end of the impressions' event-time range, exclusive (required)")
	f.StringVar(&o.id, "id", "", "training set id (its prefix training/<id>/); default <creation time>-<8 hex digits>")
	f.StringSliceVar(&o.features, "features", nil, "features of the row, in order (comma-separated); default every ranker input the join computes (offline.DefaultFeatures)")
	f.DurationVar(&o.attribution, "attribution", offline.DefaultAttribution, "label window: how long after an impression a click (watch, purchase) counts for it")
	f.DurationVar(&o.lag, "availability-lag", 0, "an example at t reads the latest snapshot with cutoff + lag <= t; set it to the batch job's publication delay to train on exactly what serving had")
	f.DurationVar(&o.lookback, "state-lookback", offline.DefaultStateLookback, "how far before --from the log is replayed for the users' session and last action")
	f.IntVar(&o.rowsPerFile, "rows-per-file", offline.DefaultRowsPerFile, "most rows per Parquet part")
	f.BoolVar(&o.asJSON, "json", false, "print the summary as one JSON object on one line")
	cmd.AddCommand(newFeaturesTrainingSetLsCmd())
	return cmd
}

// trainingSetIDRE is what --id accepts: one key segment, safe in a URI.
var trainingSetIDRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// config checks every flag and returns the offline.Config they describe;
// the error names each bad flag.
func (o featuresTrainingSetOptions) config(fs *features.FeatureSet) (offline.Config, error) {
	from, to, err := eventsRange(o.from, o.to, o.now)
	errs := []error{err}
	if o.id != "" && (!trainingSetIDRE.MatchString(o.id) || len(o.id) > 200) {
		errs = append(errs, fmt.Errorf("--id %q: want letters, digits, '.', '_' or '-', starting with a letter or digit, at most 200 characters", o.id))
	}
	if o.attribution <= 0 {
		errs = append(errs, fmt.Errorf("--attribution %s must be positive", o.attribution))
	}
	if o.lag < 0 {
		errs = append(errs, fmt.Errorf("--availability-lag %s must not be negative", o.lag))
	}
	if o.lookback <= 0 {
		errs = append(errs, fmt.Errorf("--state-lookback %s must be positive", o.lookback))
	}
	if o.rowsPerFile < 1 {
		errs = append(errs, fmt.Errorf("--rows-per-file %d must be at least 1", o.rowsPerFile))
	}
	names := slices.Clone(o.features)
	for i := range names {
		names[i] = strings.TrimSpace(names[i])
	}
	if len(names) > 0 {
		if slices.Contains(names, "") {
			errs = append(errs, fmt.Errorf("--features %q names an empty feature", strings.Join(o.features, ",")))
		} else if _, err := fs.NewLayout(names); err != nil {
			errs = append(errs, fmt.Errorf("--features: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return offline.Config{}, err
	}
	return offline.Config{
		ID: o.id, From: from, To: to, Features: names, Attribution: o.attribution,
		AvailabilityLag: o.lag, StateLookback: o.lookback, RowsPerFile: o.rowsPerFile,
	}, nil
}

// trainingSetSummary is what `features training-set` prints.
type trainingSetSummary struct {
	ID           string                `json:"id"`
	URI          string                `json:"uri"`
	From         time.Time             `json:"from"`
	To           time.Time             `json:"to"`
	Rows         int64                 `json:"rows"`
	Positives    int64                 `json:"positives"`
	PositiveRate float64               `json:"positive_rate"`
	Watched      int64                 `json:"watched"`
	Purchased    int64                 `json:"purchased"`
	EventsRead   int64                 `json:"events_read"`
	SchemaHash   string                `json:"schema_hash"`
	Features     int                   `json:"features"`
	Width        int                   `json:"width"`
	Files        int                   `json:"files"`
	Bytes        int64                 `json:"bytes"`
	DurationS    float64               `json:"duration_s"`
	Attribution  string                `json:"attribution"`
	Lag          string                `json:"availability_lag"`
	Snapshots    []offline.SnapshotUse `json:"snapshots"`
	Defaulted    map[string]string     `json:"defaulted,omitempty"`
	Warnings     []string              `json:"warnings,omitempty"`
}

func featuresTrainingSet(ctx context.Context, stdout, stderr io.Writer, cfg config.Config, o featuresTrainingSetOptions) error {
	fs, err := features.Load(definitionsFile(o.file, cfg))
	if err != nil {
		return err
	}
	bc, err := o.config(fs)
	if err != nil {
		return err
	}
	var warnings []string
	if end := bc.To.Add(bc.Attribution); end.After(o.now) {
		warnings = append(warnings, fmt.Sprintf("--to %s plus the %s attribution window is after now: clicks on the latest impressions may not have happened yet, so some of their labels are 0 that would be 1",
			bc.To.Format(time.RFC3339), bc.Attribution))
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return err
	}
	if bc.ID != "" {
		// Build would overwrite the parts of an existing training set
		// before its create-only manifest write fails.
		for info, err := range store.List(ctx, offline.Root+bc.ID+"/", objstore.ListOptions{PageSize: 1}) {
			if err != nil {
				return err
			}
			return fmt.Errorf("--id %s: training set %s already exists (%s); choose another id", bc.ID, store.URI(offline.Root+bc.ID+"/"), info.Key)
		}
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "warning: %s\n", w)
	}
	scanFrom, scanTo := bc.From.Add(-bc.StateLookback), bc.To.Add(bc.Attribution)
	fmt.Fprintf(stderr, "training set: impressions in [%s, %s) of %s, reading the log over [%s, %s]\n",
		bc.From.Format(time.RFC3339), bc.To.Format(time.RFC3339), store.URI("events/"+events.TopicInteractions+"/"),
		scanFrom.Format(time.RFC3339), scanTo.Format(time.RFC3339))
	bc.Progress = trainingSetProgress(stderr, scanFrom, scanTo)
	start := time.Now()
	m, err := offline.Build(ctx, store, fs, bc)
	if err != nil {
		return err
	}
	s := trainingSetSummary{
		ID: m.ID, URI: store.URI(offline.Root + m.ID + "/"), From: m.From, To: m.To,
		Rows: m.Rows, Positives: m.Positives, Watched: m.Watched, Purchased: m.Purchased,
		EventsRead: m.EventsRead, SchemaHash: m.SchemaHash, Features: len(m.Model.Features), Width: m.Width,
		Files: len(m.Files), DurationS: time.Since(start).Seconds(),
		Attribution: m.Attribution, Lag: m.AvailabilityLag,
		Snapshots: m.Snapshots, Defaulted: m.Defaulted, Warnings: warnings,
	}
	if m.Rows > 0 {
		s.PositiveRate = float64(m.Positives) / float64(m.Rows)
	}
	for _, f := range m.Files {
		s.Bytes += f.Bytes
	}
	if o.asJSON {
		b, err := json.Marshal(s)
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	return printTrainingSetSummary(stdout, s)
}

// trainingSetProgress reports a build about every 2 seconds, and at its
// end.
func trainingSetProgress(w io.Writer, scanFrom, scanTo time.Time) func(offline.Progress) {
	var last time.Duration
	span := scanTo.Sub(scanFrom).Seconds()
	return func(p offline.Progress) {
		if p.EventTime.IsZero() {
			fmt.Fprintf(w, "read %d events, %d examples, %s: writing the manifest\n", p.Events, p.Examples, p.Elapsed.Round(100*time.Millisecond))
			return
		}
		if p.Elapsed-last < 2*time.Second {
			return
		}
		last = p.Elapsed
		fmt.Fprintf(w, "read %d events, %d examples, at event time %s (%.0f%% of the log's range), %s\n", p.Events, p.Examples,
			p.EventTime.UTC().Format(time.RFC3339), 100*p.EventTime.Sub(scanFrom).Seconds()/span, p.Elapsed.Round(100*time.Millisecond))
	}
}

func printTrainingSetSummary(w io.Writer, s trainingSetSummary) error {
	fmt.Fprintf(w, "training set %s: %d rows, %d positives (%.2f%%), %d watched, %d purchased; %d events read in %s\n",
		s.ID, s.Rows, s.Positives, 100*s.PositiveRate, s.Watched, s.Purchased, s.EventsRead, time.Duration(s.DurationS*float64(time.Second)).Round(time.Millisecond))
	fmt.Fprintf(w, "location:    %s (%s, %d bytes, manifest.json)\n", s.URI, count(s.Files, "Parquet part"), s.Bytes)
	fmt.Fprintf(w, "examples:    impressions in [%s, %s), clicked within %s, snapshots available %s after their cutoff\n",
		s.From.Format(time.RFC3339), s.To.Format(time.RFC3339), s.Attribution, s.Lag)
	fmt.Fprintf(w, "schema hash: %s\n", s.SchemaHash)
	fmt.Fprintf(w, "row:         %d features, %d float32 values\n\n", s.Features, s.Width)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSNAPSHOT\tFIRST EVENT\tLAST EVENT\tEXAMPLES")
	for _, u := range s.Snapshots {
		if u.Examples == 0 {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", u.Group, cmp.Or(u.Version, "(defaults: none yet)"),
			u.First.UTC().Format(time.RFC3339), u.Last.UTC().Format(time.RFC3339), u.Examples)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(s.Defaulted) > 0 {
		fmt.Fprintf(w, "\n%s hold their defaults in every row:\n", count(len(s.Defaulted), "feature"))
		byReason := map[string][]string{}
		for n, why := range s.Defaulted {
			byReason[why] = append(byReason[why], n)
		}
		for _, why := range slices.Sorted(maps.Keys(byReason)) {
			names := byReason[why]
			slices.Sort(names)
			fmt.Fprintf(w, "  %s: %s\n", why, strings.Join(names, ", "))
		}
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	return nil
}

func newFeaturesTrainingSetLsCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the training sets on S3 with their manifests",
		Long: `ls lists every training set under training/ on S3, newest first: its event-time
range, rows, positives, width and schema hash from its manifest. A training set
without a manifest is listed as incomplete (a build that is running, failed or
was interrupted); one whose manifest cannot be read as unreadable, with why.
With --json it prints one JSON object on one line holding every manifest.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			store, err := objstore.New(cmd.Context(), cfg.S3)
			if err != nil {
				return err
			}
			return featuresTrainingSetLs(cmd.Context(), cmd.OutOrStdout(), store, asJSON)
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object on one line, with every manifest")
	return cmd
}

// Training set states in trainingSetEntry.Status.
const (
	trainingSetComplete   = "complete"
	trainingSetIncomplete = "incomplete"
	trainingSetUnreadable = "unreadable"
)

// trainingSetEntry is one training set found under offline.Root.
type trainingSetEntry struct {
	ID     string `json:"id"`
	URI    string `json:"uri"`
	Status string `json:"status"`
	// Error says why the manifest is unreadable.
	Error        string            `json:"error,omitempty"`
	Objects      int               `json:"objects"`
	Bytes        int64             `json:"bytes"`
	LastModified time.Time         `json:"last_modified"`
	Manifest     *offline.Manifest `json:"manifest,omitempty"`
}

// listTrainingSets reads every training set's manifest, newest first (by
// creation, or the newest object of one without a manifest).
func listTrainingSets(ctx context.Context, st *objstore.Store) ([]trainingSetEntry, error) {
	byID := map[string]*trainingSetEntry{}
	hasManifest := map[string]bool{}
	for info, err := range st.List(ctx, offline.Root, objstore.ListOptions{}) {
		if err != nil {
			return nil, fmt.Errorf("list training sets: %w", err)
		}
		id, name, ok := strings.Cut(strings.TrimPrefix(info.Key, offline.Root), "/")
		if !ok || id == "" {
			continue
		}
		e := byID[id]
		if e == nil {
			e = &trainingSetEntry{ID: id, URI: st.URI(offline.Root + id + "/")}
			byID[id] = e
		}
		e.Objects++
		e.Bytes += info.Size
		if info.LastModified.After(e.LastModified) {
			e.LastModified = info.LastModified
		}
		hasManifest[id] = hasManifest[id] || name == "manifest.json"
	}
	out := make([]trainingSetEntry, 0, len(byID))
	for id, e := range byID {
		switch {
		case !hasManifest[id]:
			e.Status = trainingSetIncomplete
		default:
			m, err := offline.ReadManifest(ctx, st, id)
			if err != nil {
				if ctx.Err() != nil {
					return nil, err
				}
				e.Status, e.Error = trainingSetUnreadable, err.Error()
			} else {
				e.Status, e.Manifest = trainingSetComplete, &m
			}
		}
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b trainingSetEntry) int {
		return cmp.Or(b.created().Compare(a.created()), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

func (e *trainingSetEntry) created() time.Time {
	if e.Manifest != nil {
		return e.Manifest.CreatedAt
	}
	return e.LastModified
}

func featuresTrainingSetLs(ctx context.Context, out io.Writer, st *objstore.Store, asJSON bool) error {
	sets, err := listTrainingSets(ctx, st)
	if err != nil {
		return err
	}
	if asJSON {
		b, err := json.Marshal(struct {
			URI          string             `json:"uri"`
			TrainingSets []trainingSetEntry `json:"training_sets"`
		}{st.URI(offline.Root), sets})
		if err != nil {
			return fmt.Errorf("encode result: %w", err)
		}
		_, err = fmt.Fprintf(out, "%s\n", b)
		return err
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tCREATED\tFROM\tTO\tROWS\tPOSITIVES\tWIDTH\tBYTES\tSCHEMA HASH\tSTATUS")
	incomplete := 0
	for _, e := range sets {
		m := e.Manifest
		if m == nil {
			incomplete++
			status := e.Status + " (no manifest)"
			if e.Error != "" {
				status = e.Status + ": " + e.Error
			}
			fmt.Fprintf(tw, "%s\t%s\t-\t-\t-\t-\t-\t%d\t-\t%s\n", e.ID, e.LastModified.UTC().Format(time.RFC3339), e.Bytes, status)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\n", e.ID, m.CreatedAt.UTC().Format(time.RFC3339),
			m.From.UTC().Format(time.RFC3339), m.To.UTC().Format(time.RFC3339), m.Rows, m.Positives, m.Width, e.Bytes, m.SchemaHash, e.Status)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(out, "%s (%d without a readable manifest) under %s\n", count(len(sets), "training set"), incomplete, st.URI(offline.Root))
	return nil
}
