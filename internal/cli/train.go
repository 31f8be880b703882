package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/internal/objstore"
	"github.com/adaptrec/adaptrec/registry"
	"github.com/adaptrec/adaptrec/registry/onnxcheck"
	"github.com/adaptrec/adaptrec/trainer/job"
)

func init() { register(newTrainCmd) }

// jobsRoot is the key prefix of training jobs' output folders.
const jobsRoot = "training-jobs/"

// trainParamFlags are the hyperparameter flags of train and bench train.
type trainParamFlags struct {
	set        *pflag.FlagSet
	paramsJSON string

	seed                   uint64
	hidden                 string
	epochs, batchSize      int
	learningRate, l2, stop float64
	validation             float64
	gap                    time.Duration
	factors, iterations    int
	regularization, alpha  float64
	lists, nprobe          int
	weights                map[string]string
}

func (p *trainParamFlags) register(f *pflag.FlagSet) {
	p.set = f
	f.StringVar(&p.paramsJSON, "params", "", "training parameters as JSON (job.Params: seed, validation_fraction, gap, ranker{...}, embeddings{...}); the flags below override what it sets")
	f.Uint64Var(&p.seed, "seed", 0, "seed of every random choice: the same data, parameters and seed give the same artifacts")
	f.StringVar(&p.hidden, "hidden", joinInts(job.DefaultHidden), "ranker hidden layer sizes, comma-separated; --hidden '' trains logistic regression")
	f.IntVar(&p.epochs, "epochs", job.DefaultEpochs, "ranker epochs")
	f.IntVar(&p.batchSize, "batch-size", job.DefaultBatchSize, "ranker mini-batch rows")
	f.Float64Var(&p.learningRate, "learning-rate", job.DefaultLearningRate, "ranker Adam step size")
	f.Float64Var(&p.l2, "l2", 0, "ranker L2 penalty on weights")
	f.Float64Var(&p.stop, "early-stopping", 0, "share of the training part (random, by the seed) that picks the best epoch; 0 trains every epoch")
	f.Float64Var(&p.validation, "validation-fraction", job.DefaultValidationFraction, "latest share of the examples, by event time, that measures the ranker")
	f.DurationVar(&p.gap, "gap", 0, "training examples within this of the validation part are dropped; 0: the training set's attribution window, negative: none")
	f.IntVar(&p.factors, "factors", job.DefaultFactors, "embedding dimensions")
	f.IntVar(&p.iterations, "als-iterations", job.DefaultALSIterations, "ALS iterations")
	f.Float64Var(&p.regularization, "regularization", 0, "ALS L2 weight (0: trainer/retrieval's default)")
	f.Float64Var(&p.alpha, "alpha", 0, "ALS confidence slope (0: trainer/retrieval's default)")
	f.IntVar(&p.lists, "lists", 0, "IVF lists (0: round(2·√items))")
	f.IntVar(&p.nprobe, "nprobe", 0, "IVF lists a search scans by default (0: trainer/retrieval's default)")
	f.StringToStringVar(&p.weights, "weights", nil, "strengths of the actions that count as positives for the embeddings (ACTION_CLICK=1,...); default job.DefaultWeights")
}

// params returns --params with every flag given on the command line
// applied over it, validated.
func (p *trainParamFlags) params() (job.Params, error) {
	var out job.Params
	if p.paramsJSON != "" {
		dec := json.NewDecoder(strings.NewReader(p.paramsJSON))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out); err != nil {
			return job.Params{}, fmt.Errorf("--params: %w", err)
		}
	}
	changed := func(name string) bool { return p.set == nil || p.set.Changed(name) }
	if changed("seed") {
		out.Seed = p.seed
	}
	if changed("hidden") {
		out.Ranker.Hidden = []int{}
		for h := range strings.SplitSeq(p.hidden, ",") {
			if h = strings.TrimSpace(h); h == "" {
				continue
			}
			n, err := strconv.Atoi(h)
			if err != nil || n < 1 {
				return job.Params{}, fmt.Errorf("--hidden %q: want positive layer sizes separated by commas", p.hidden)
			}
			out.Ranker.Hidden = append(out.Ranker.Hidden, n)
		}
	}
	set := func(name string, dst *int, v int) {
		if changed(name) {
			*dst = v
		}
	}
	setF := func(name string, dst *float64, v float64) {
		if changed(name) {
			*dst = v
		}
	}
	set("epochs", &out.Ranker.Epochs, p.epochs)
	set("batch-size", &out.Ranker.BatchSize, p.batchSize)
	setF("learning-rate", &out.Ranker.LearningRate, p.learningRate)
	setF("l2", &out.Ranker.L2, p.l2)
	setF("early-stopping", &out.Ranker.EarlyStoppingFraction, p.stop)
	setF("validation-fraction", &out.ValidationFraction, p.validation)
	if changed("gap") {
		out.Gap = job.Duration(p.gap)
	}
	set("factors", &out.Embeddings.Factors, p.factors)
	set("als-iterations", &out.Embeddings.Iterations, p.iterations)
	setF("regularization", &out.Embeddings.Regularization, p.regularization)
	setF("alpha", &out.Embeddings.Alpha, p.alpha)
	set("lists", &out.Embeddings.Lists, p.lists)
	set("nprobe", &out.Embeddings.NProbe, p.nprobe)
	if changed("weights") {
		out.Embeddings.Weights = make(map[string]float64, len(p.weights))
		for action, v := range p.weights {
			w, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return job.Params{}, fmt.Errorf("--weights %s=%q: not a number", action, v)
			}
			out.Embeddings.Weights[action] = w
		}
	}
	if err := out.Validate(); err != nil {
		return job.Params{}, err
	}
	return out, nil
}

type trainOptions struct {
	file        string
	trainingSet string
	from, to    string
	setID       string
	eventsFrom  string
	eventsTo    string
	model       string
	external    string
	output      string
	codeVersion string
	actor       string
	reason      string
	asJSON      bool
	params      trainParamFlags
	now         time.Time
}

func newTrainCmd() *cobra.Command { return trainCommand(&trainOptions{}) }

// trainCommand builds the train command over o, which its flags fill.
func trainCommand(o *trainOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "train (--training-set ID | --from TIME --to TIME) [--external-command CMD]",
		Short: "Train the ranker and the item index, check them and register them as a model version",
		Long: `train runs one training job and registers its result in the model registry
(decisions: docs/adr/014).

The job reads a point-in-time training set (--training-set, or --from/--to to
build one first exactly as 'features training-set' does), splits it by event
time — the latest --validation-fraction of the examples measure the ranker, the
examples before them minus --gap train it, so no label of the future leaks in —
trains the ranker (logistic regression or MLP), trains implicit-ALS item
embeddings and their IVF index from the positive interactions of the event log
before the split, exports the ranker to ONNX, and writes the layout (input.json,
ranker.onnx, items.ivf, metadata.json) to --output, by default
training-jobs/<job id>/ on S3.

The Go trainer runs in this process. --external-command runs a program instead
(a GPU host's PyTorch script, a cluster job launcher) with
--input <uri> --output <uri> --params <json>; it reports progress as JSON lines
and must write the same layout, which is checked ('adaptrec train job' is the
reference program). Progress goes to stderr.

The result is registered as a version of --model: the registry checks its
schema against the feature definitions and runs ONNX Runtime on it (the
ranker loads as a scorer of the schema's width, its metadata names the same
schema hash, a probe batch scores finite values in [0, 1]); a refused version
writes nothing. Promotion is a separate decision: 'adaptrec models promote'.

The summary (or with --json one JSON object on one line) goes to stdout.`,
		Example: `  adaptrec train --training-set 20261115T020000Z-1a2b3c4d
  adaptrec train --from 2026-11-01 --to 2026-11-15 --epochs 8 --hidden 128,64 --json
  adaptrec train --training-set ctr-week46 --external-command "ssh gpu-1 /opt/adaptrec/train.sh"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			o.now = time.Now()
			return train(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), cfg, *o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.file, "file", "", fileFlagHelp)
	f.StringVar(&o.trainingSet, "training-set", "", "id of the training set to train on (see 'features training-set ls')")
	f.StringVar(&o.from, "from", "", "build a training set first: start of the impressions' event-time range (RFC 3339, a UTC date, now, or relative like -7d)")
	f.StringVar(&o.to, "to", "", "build a training set first: end of the range, exclusive")
	f.StringVar(&o.setID, "training-set-id", "", "with --from/--to: id of the training set to build (default <creation time>-<8 hex digits>)")
	f.StringVar(&o.eventsFrom, "events-from", "", "first event time of the embeddings' positives (default 30 days before the training set's start)")
	f.StringVar(&o.eventsTo, "events-to", "", "end of the embeddings' positives (default, and at most, the split's cutoff)")
	f.StringVar(&o.model, "model", "ranker", "model name in the registry")
	f.StringVar(&o.external, "external-command", "", "train with this program instead of in process (split on spaces; wrap anything fancier in a script)")
	f.StringVar(&o.output, "output", "", "output folder: s3://bucket/key/, file:///path or a path (default training-jobs/<job id>/ in the configured bucket)")
	f.StringVar(&o.codeVersion, "code-version", "", "code version recorded with the job and the model version, e.g. the commit (default this build's VCS revision, or devel)")
	f.StringVar(&o.actor, "actor", defaultActor(), "who registers, for the registry")
	f.StringVar(&o.reason, "reason", "", "why, for the registry")
	f.BoolVar(&o.asJSON, "json", false, "print the summary as one JSON object on one line")
	o.params.register(f)
	cmd.AddCommand(newTrainJobCmd())
	return cmd
}

// trainSummary is what `adaptrec train` prints.
type trainSummary struct {
	Model            string             `json:"model"`
	Version          string             `json:"version"`
	VersionURI       string             `json:"version_uri"`
	JobID            string             `json:"job_id"`
	Trainer          string             `json:"trainer"`
	CodeVersion      string             `json:"code_version"`
	TrainingSet      string             `json:"training_set"`
	TrainingSetBuilt bool               `json:"training_set_built"`
	SchemaHash       string             `json:"schema_hash"`
	Output           string             `json:"output"`
	Artifacts        map[string]string  `json:"artifacts"`
	Metrics          map[string]float64 `json:"metrics"`
	Split            job.Split          `json:"split"`
	Embeddings       job.Embeddings     `json:"embeddings"`
	Params           job.Params         `json:"params"`
	DurationS        float64            `json:"duration_s"`
	Warnings         []string           `json:"warnings,omitempty"`
}

// check validates the flags that need no I/O, naming every bad one.
func (o trainOptions) check() (job.Params, error) {
	var errs []error
	params, err := o.params.params()
	errs = append(errs, err)
	switch {
	case o.trainingSet != "" && (o.from != "" || o.to != ""):
		errs = append(errs, errors.New("--training-set and --from/--to exclude each other: train on an existing training set or build one"))
	case o.trainingSet == "" && o.from == "" && o.to == "":
		errs = append(errs, errors.New("--training-set, or --from and --to to build one, is required"))
	case o.trainingSet == "":
		_, _, err := eventsRange(o.from, o.to, o.now)
		errs = append(errs, err)
	}
	if o.trainingSet != "" && !trainingSetIDRE.MatchString(o.trainingSet) {
		errs = append(errs, fmt.Errorf("--training-set %q is not a training set id", o.trainingSet))
	}
	if o.setID != "" && (o.trainingSet != "" || !trainingSetIDRE.MatchString(o.setID) || len(o.setID) > 200) {
		errs = append(errs, fmt.Errorf("--training-set-id %q: only with --from/--to, letters, digits, '.', '_' or '-'", o.setID))
	}
	for _, tf := range []struct{ flag, v string }{{"events-from", o.eventsFrom}, {"events-to", o.eventsTo}} {
		if tf.v != "" {
			_, err := eventsParseTime(tf.flag, tf.v, o.now)
			errs = append(errs, err)
		}
	}
	if err := registry.CheckModel(o.model); err != nil {
		errs = append(errs, fmt.Errorf("--model: %w", err))
	}
	if o.external != "" && len(strings.Fields(o.external)) == 0 {
		errs = append(errs, errors.New("--external-command is blank"))
	}
	return params, errors.Join(errs...)
}

func train(ctx context.Context, stdout, stderr io.Writer, cfg config.Config, o trainOptions) (err error) {
	params, err := o.check()
	if err != nil {
		return err
	}
	fs, err := features.Load(definitionsFile(o.file, cfg))
	if err != nil {
		return err
	}
	store, err := objstore.New(ctx, cfg.S3)
	if err != nil {
		return err
	}
	stderr = &lockedWriter{w: stderr}
	logf := func(format string, args ...any) { fmt.Fprintf(stderr, format+"\n", args...) }
	start := time.Now()

	setID, built := o.trainingSet, false
	if setID == "" {
		from, to, _ := eventsRange(o.from, o.to, o.now)
		if o.setID != "" {
			for info, err := range store.List(ctx, offline.Root+o.setID+"/", objstore.ListOptions{PageSize: 1}) {
				if err != nil {
					return err
				}
				return fmt.Errorf("--training-set-id %s: training set %s already exists (%s); train on it with --training-set", o.setID, store.URI(offline.Root+o.setID+"/"), info.Key)
			}
		}
		logf("building the training set of impressions in [%s, %s)", from.Format(time.RFC3339), to.Format(time.RFC3339))
		bc := offline.Config{ID: o.setID, From: from, To: to}
		bc.Progress = trainingSetProgress(stderr, from.Add(-offline.DefaultStateLookback), to.Add(offline.DefaultAttribution))
		m, err := offline.Build(ctx, store, fs, bc)
		if err != nil {
			return err
		}
		setID, built = m.ID, true
		logf("training set %s: %d rows, %d positives", m.ID, m.Rows, m.Positives)
	}

	in := job.Input{
		Format: job.InputFormat, JobID: job.NewJobID(o.now), Store: store.URI(""), TrainingSet: setID,
		Events: job.EventRange{Topic: events.TopicInteractions}, Params: params, CodeVersion: o.codeVersion,
	}
	if in.CodeVersion == "" {
		in.CodeVersion = job.CodeVersion()
	}
	if o.eventsFrom != "" {
		in.Events.From, _ = eventsParseTime("events-from", o.eventsFrom, o.now)
	}
	if o.eventsTo != "" {
		in.Events.To, _ = eventsParseTime("events-to", o.eventsTo, o.now)
	}
	var out job.Dir = job.NewStoreDir(store, jobsRoot+in.JobID+"/")
	if o.output != "" {
		if out, err = job.OpenDir(ctx, o.output, cfg.S3); err != nil {
			return fmt.Errorf("--output: %w", err)
		}
		if _, err := out.Get(ctx, job.MetadataFile); err == nil {
			return fmt.Errorf("--output %s already holds a finished job (%s); choose an empty folder", out.URI(""), job.MetadataFile)
		} else if !errors.Is(err, job.ErrNotFound) {
			return fmt.Errorf("--output: %w", err)
		}
	}
	progress := func(p job.Progress) { logf("%s", formatProgress(p)) }
	var trainer job.Trainer
	name := "the Go trainer"
	if o.external != "" {
		fields := strings.Fields(o.external)
		s3 := cfg.S3
		trainer = &job.Command{Path: fields[0], Args: fields[1:], S3: &s3, Progress: progress, Log: prefixWriter{w: stderr, prefix: "trainer: "}}
		name = "external command " + o.external
	} else {
		trainer = &job.GoTrainer{Store: store, Progress: progress, CodeVersion: o.codeVersion}
	}
	logf("training job %s on training set %s with %s → %s", in.JobID, setID, name, out.URI(""))
	l, err := trainer.Train(ctx, in, out)
	if err != nil {
		return err
	}

	reg, closeReg, err := modelsWriter(ctx, cfg, fs, stderr)
	if err != nil {
		return err
	}
	defer closeReg()
	reg.Validator = &onnxcheck.Validator{}
	reg.RequiredMetrics = []string{job.MetricAUC, job.MetricLogLoss}
	reason := o.reason
	if reason == "" {
		reason = "adaptrec train: job " + in.JobID
	}
	logf("registering in %s (schema check, ONNX Runtime validation)", reg.Store.URI(registry.ModelPrefix(o.model)))
	m, regErr := job.Register(ctx, reg, l, o.model, o.actor, reason)
	if regErr != nil && !errors.Is(regErr, registry.ErrUnpublished) {
		return fmt.Errorf("the job's output is at %s but was not registered: %w", l.URI, regErr)
	}
	md := l.Metadata
	s := trainSummary{
		Model: o.model, Version: m.Version, VersionURI: reg.Store.URI(registry.VersionPrefix(o.model, m.Version)),
		JobID: md.JobID, Trainer: md.Trainer, CodeVersion: md.CodeVersion, TrainingSet: md.TrainingSet, TrainingSetBuilt: built,
		SchemaHash: md.SchemaHash, Output: l.URI, Artifacts: map[string]string{}, Metrics: md.Metrics,
		Split: md.Split, Embeddings: md.Embeddings, Params: md.Params, DurationS: time.Since(start).Seconds(),
	}
	for _, a := range m.Artifacts {
		s.Artifacts[a.Name] = reg.Store.URI(registry.ArtifactKey(o.model, m.Version, a.Name))
	}
	if regErr != nil {
		s.Warnings = append(s.Warnings, regErr.Error())
	}
	if loss, base := md.Metrics[job.MetricLogLoss], md.Metrics["baseline_logloss"]; base > 0 && loss > base {
		s.Warnings = append(s.Warnings, fmt.Sprintf("the ranker's log loss on the validation part, %.4f, is worse than predicting the training click rate (%.4f): check the features for drift between the training and validation periods before promoting it", loss, base))
	}
	if o.asJSON {
		if err := writeJSON(stdout, s); err != nil {
			return err
		}
		return regErr
	}
	printTrainSummary(stdout, s, m)
	return regErr
}

func printTrainSummary(w io.Writer, s trainSummary, m registry.Manifest) {
	sp, e := s.Split, s.Embeddings
	fmt.Fprintf(w, "registered %s version %s (job %s, %s trainer, code %s) in %s\n", s.Model, s.Version, s.JobID, s.Trainer, s.CodeVersion,
		time.Duration(s.DurationS*float64(time.Second)).Round(100*time.Millisecond))
	built := ""
	if s.TrainingSetBuilt {
		built = " (built for this job)"
	}
	fmt.Fprintf(w, "training set: %s%s, schema %s\n", s.TrainingSet, built, s.SchemaHash)
	fmt.Fprintf(w, "split:        %d examples before %s train, %d from %s validate (%d in the %s gap dropped)\n",
		sp.TrainRows, sp.TrainEnd.UTC().Format(time.RFC3339), sp.ValidationRows, sp.Cutoff.UTC().Format(time.RFC3339), sp.GapRows, time.Duration(sp.Gap))
	var other []string
	for _, k := range slices.Sorted(maps.Keys(s.Metrics)) {
		if k != job.MetricAUC && k != job.MetricLogLoss {
			other = append(other, k+" "+strconv.FormatFloat(s.Metrics[k], 'g', 4, 64))
		}
	}
	fmt.Fprintf(w, "metrics:      AUC %.4f, log loss %.4f on the validation part; %s\n", s.Metrics[job.MetricAUC], s.Metrics[job.MetricLogLoss], strings.Join(other, ", "))
	fmt.Fprintf(w, "embeddings:   %d pairs of %d users and %d items from [%s, %s), %d dims, %d lists\n",
		e.Pairs, e.Users, e.Items, e.From.UTC().Format(time.RFC3339), e.To.UTC().Format(time.RFC3339), e.Dims, e.Lists)
	fmt.Fprintf(w, "job output:   %s\n", s.Output)
	fmt.Fprintf(w, "version:      %s\n", s.VersionURI)
	for _, a := range m.Artifacts {
		fmt.Fprintf(w, "  %-14s %-10s %d bytes\n", a.Name, a.Role, a.Bytes)
	}
	for _, warn := range s.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	fmt.Fprintf(w, "next:         adaptrec models promote %s --model %s --to shadow|canary|production\n", s.Version, s.Model)
}

// prefixWriter prefixes every line written to it (one Write per line).
type prefixWriter struct {
	w      io.Writer
	prefix string
}

func (p prefixWriter) Write(b []byte) (int, error) {
	if _, err := fmt.Fprintf(p.w, "%s%s", p.prefix, b); err != nil {
		return 0, err
	}
	return len(b), nil
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

func newTrainJobCmd() *cobra.Command {
	var input, output, params string
	cmd := &cobra.Command{
		Use:   "job --input URI --output URI [--params JSON]",
		Short: "Run one training job as an external trainer: the protocol's reference program",
		Long: `job is the program side of the external trainer protocol (docs/adr/014), running
the Go trainer: it reads the job's input.json from --input, trains from the store
the input names, writes the layout to --output, and reports progress as JSON
lines on stdout ({"event":"progress",...}, then {"event":"done",...} or
{"event":"error",...}). s3:// URIs are opened with the configuration's S3
endpoint and credentials. 'adaptrec train --external-command "adaptrec train job"'
runs the job in a separate process; a GPU host runs its own program instead.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := loadConfig()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			args := []string{"--input", input, "--output", output}
			if params != "" {
				args = append(args, "--params", params)
			}
			return job.RunCommand(ctx, args, cfg.S3, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVar(&input, "input", "", "URI of the job's input.json (required)")
	f.StringVar(&output, "output", "", "URI of the output folder (required)")
	f.StringVar(&params, "params", "", "parameters as JSON, replacing the input's")
	return cmd
}
