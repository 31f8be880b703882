package job

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/serving/ann"
	"github.com/adaptrec/adaptrec/serving/covisit"
	"github.com/adaptrec/adaptrec/trainer/ranker"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// Trainer runs one training job: it trains from in and writes the artifact
// layout into out, input.json first and metadata.json last.
type Trainer interface {
	Train(ctx context.Context, in Input, out Dir) (*Layout, error)
}

var (
	_ Trainer = (*GoTrainer)(nil)
	_ Trainer = (*Command)(nil)
)

// Stage is a step of a training job, as progress reports it.
type Stage string

// Stages, in the order the Go trainer runs them.
const (
	StageRead       Stage = "read"
	StageSplit      Stage = "split"
	StageRanker     Stage = "ranker"
	StageEvaluate   Stage = "evaluate"
	StageEmbeddings Stage = "embeddings"
	StageIndex      Stage = "index"
	StageANN        Stage = "ann"
	StageCovisit    Stage = "covisit"
	StageExport     Stage = "export"
	StageWrite      Stage = "write"
)

// Progress reports how far a job is.
type Progress struct {
	Stage Stage `json:"stage"`
	// Step and Steps count within the stage (epochs, ALS iterations); 0
	// when the stage has no steps.
	Step    int                `json:"step,omitempty"`
	Steps   int                `json:"steps,omitempty"`
	Message string             `json:"message,omitempty"`
	Metrics map[string]float64 `json:"metrics,omitempty"`
	// Elapsed is the time since the job started.
	Elapsed time.Duration `json:"-"`
}

// GoTrainer trains in process (see the package documentation). Its fields
// are set once; Train may run concurrently.
type GoTrainer struct {
	// Store holds the training sets and the event log; required.
	Store offline.Store
	// Workers is how many goroutines train; 0 means GOMAXPROCS. It never
	// changes the result.
	Workers int
	// Progress, when set, receives every step on Train's goroutine.
	Progress func(Progress)
	// Now stamps Metadata.CreatedAt; time.Now when nil.
	Now func() time.Time
	// CodeVersion is recorded as the trainer's code version; CodeVersion()
	// when empty (set it where builds carry no VCS information).
	CodeVersion string
}

// Train runs the job: read the training set, split it by time, train and
// measure the ranker, train the embeddings and the index, export, write.
func (g *GoTrainer) Train(ctx context.Context, in Input, out Dir) (*Layout, error) {
	if g.Store == nil {
		return nil, errors.New("go trainer: Store is required")
	}
	if err := in.Validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	timings := map[string]float64{}
	lap := start
	timed := func(name string) {
		now := time.Now()
		timings[name] += now.Sub(lap).Seconds()
		lap = now
	}
	report := func(p Progress) {
		if g.Progress != nil {
			p.Elapsed = time.Since(start)
			g.Progress(p)
		}
	}
	in.Params = in.Params.WithDefaults()
	if in.Events.Topic == "" {
		in.Events.Topic = events.TopicInteractions
	}
	inputJSON, err := EncodeInput(in)
	if err != nil {
		return nil, err
	}
	if err := out.Put(ctx, InputFile, inputJSON); err != nil {
		return nil, err
	}

	// Read.
	var m offline.Manifest
	var cols *offline.Columns
	if in.Data != nil {
		m = in.Data.Manifest
		cols = columnsOf(in.Data.Rows, m.Width)
		report(Progress{Stage: StageRead, Message: fmt.Sprintf("training set %s in memory: %d rows of %d values", m.ID, cols.Len(), m.Width)})
	} else {
		report(Progress{Stage: StageRead, Message: fmt.Sprintf("reading training set %s from %s", in.TrainingSet, g.Store.URI(offline.Root+in.TrainingSet+"/"))})
		if m, err = offline.ReadManifest(ctx, g.Store, in.TrainingSet); err != nil {
			return nil, err
		}
		if cols, err = offline.ReadColumns(ctx, g.Store, m); err != nil {
			return nil, err
		}
		report(Progress{Stage: StageRead, Message: fmt.Sprintf("read %d rows of %d values", cols.Len(), m.Width)})
	}
	if w, err := schemaWidth(m.Model); err != nil || w != m.Width || cols.Width != m.Width {
		return nil, fmt.Errorf("training set %s: its model schema does not describe rows of width %d (%v)", m.ID, m.Width, err)
	}
	timed("read")

	// Split.
	p := &in.Params
	if p.Gap == 0 {
		attribution, err := time.ParseDuration(m.Attribution)
		if err != nil {
			return nil, fmt.Errorf("training set %s: attribution %q: %w", m.ID, m.Attribution, err)
		}
		p.Gap = Duration(attribution)
	}
	split, trainIdx, valIdx, err := splitByTime(cols, p.ValidationFraction, max(time.Duration(p.Gap), 0))
	if err != nil {
		return nil, fmt.Errorf("training set %s: %w", m.ID, err)
	}
	trainSet := dataset(cols, trainIdx)
	valSet := dataset(cols, valIdx)
	cols, trainIdx, valIdx = nil, nil, nil // the datasets hold copies
	report(Progress{Stage: StageSplit, Message: fmt.Sprintf("%d training examples before %s, %d validation examples from %s (%d in the %s gap dropped)",
		split.TrainRows, split.TrainEnd.Format(time.RFC3339), split.ValidationRows, split.Cutoff.Format(time.RFC3339), split.GapRows, time.Duration(split.Gap))})
	timed("split")

	// Ranker.
	rc := p.Ranker.config(g.Workers, func(rp ranker.Progress) {
		metrics := map[string]float64{"loss": rp.Loss, "rows_per_s": rp.RowsPerSec}
		msg := fmt.Sprintf("epoch %d/%d: loss %.4f, %.0f rows/s", rp.Epoch, rp.Epochs, rp.Loss, rp.RowsPerSec)
		if rp.HasValidation {
			metrics["early_stopping_loss"], metrics["early_stopping_auc"] = rp.ValLoss, rp.ValAUC
			msg += fmt.Sprintf(", early-stopping loss %.4f AUC %.4f", rp.ValLoss, rp.ValAUC)
		}
		report(Progress{Stage: StageRanker, Step: rp.Epoch, Steps: rp.Epochs, Message: msg, Metrics: metrics})
	})
	rc.Seed, rc.Schema = p.Seed, m.Model
	res, err := ranker.Train(ctx, trainSet, rc)
	if err != nil {
		return nil, err
	}
	split.EarlyStoppingRows = int64(res.ValidationRows)
	split.BestEpoch, split.EpochsRun = res.BestEpoch, len(res.History)
	trainSet = ranker.Dataset{}
	timed("ranker")

	scores, err := res.Model.Predict(valSet.Rows, valSet.Len())
	if err != nil {
		return nil, err
	}
	metrics, err := evaluate(scores, valSet.Labels, float64(split.TrainPositives)/float64(split.TrainRows))
	if err != nil {
		return nil, fmt.Errorf("training set %s: validation part: %w", m.ID, err)
	}
	metrics["train_loss"] = res.History[res.BestEpoch-1].Loss
	report(Progress{Stage: StageEvaluate, Message: fmt.Sprintf("validation AUC %.4f, log loss %.4f (constant predictor %.4f) on %d examples",
		metrics[MetricAUC], metrics[MetricLogLoss], metrics["baseline_logloss"], len(scores)), Metrics: metrics})
	timed("evaluate")

	// Embeddings and indexes.
	items, err := g.embeddings(ctx, in, m, split.Cutoff, report, timed)
	if err != nil {
		return nil, err
	}
	annIndex, annMD, err := g.annIndex(ctx, in.Params, items.model.ItemFactors, items.model.Items, items.model.Dims, report)
	if err != nil {
		return nil, err
	}
	timed("ann")
	items.model = nil // the ANN index holds its own copy of the vectors
	table, covMD, err := g.covisitTable(ctx, in.Params, items.visits, items.index.Len(), report)
	if err != nil {
		return nil, err
	}
	timed("covisit")

	// Export.
	rankerONNX, err := res.Model.ExportONNX()
	if err != nil {
		return nil, err
	}
	var ivf, annBytes, covBytes, userBytes bytes.Buffer
	if err := items.index.Save(&ivf); err != nil {
		return nil, err
	}
	if err := items.users.Save(&userBytes); err != nil {
		return nil, err
	}
	if err := annIndex.Save(&annBytes); err != nil {
		return nil, err
	}
	if err := table.Save(&covBytes); err != nil {
		return nil, err
	}
	report(Progress{Stage: StageExport, Message: fmt.Sprintf("%s %d bytes, %s %d bytes, %s %d bytes, %s %d bytes, %s %d bytes",
		RankerFile, len(rankerONNX), IndexFile, ivf.Len(), ANNFile, annBytes.Len(), CovisitFile, covBytes.Len(), UsersFile, userBytes.Len())})
	timed("export")

	// Write: artifacts, then the metadata.
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	md := Metadata{
		Format: MetadataFormat, JobID: in.JobID, Trainer: TrainerGo, CodeVersion: cmp.Or(g.CodeVersion, CodeVersion()),
		CreatedAt: now().UTC().Truncate(time.Millisecond), TrainingSet: m.ID,
		SchemaHash: m.Model.SchemaHash, Schema: m.Model, InputWidth: m.Width,
		Params: in.Params, Split: split, Embeddings: items.meta, ANN: annMD, Covisit: covMD,
		UserVectors: UserVectors{Users: items.users.Len(), Dims: items.users.Dims()}, Metrics: metrics,
	}
	files := map[string][]byte{InputFile: inputJSON, RankerFile: rankerONNX, IndexFile: ivf.Bytes(),
		ANNFile: annBytes.Bytes(), CovisitFile: covBytes.Bytes(), UsersFile: userBytes.Bytes()}
	for _, r := range layoutRoles {
		md.Artifacts = append(md.Artifacts, artifactOf(r.name, r.role, files[r.name]))
	}
	for _, a := range md.Artifacts {
		if err := out.Put(ctx, a.Name, files[a.Name]); err != nil {
			return nil, err
		}
	}
	timed("write")
	timings["total"] = time.Since(start).Seconds()
	md.Timings = timings
	b, err := EncodeMetadata(md)
	if err != nil {
		return nil, err
	}
	if err := out.Put(ctx, MetadataFile, b); err != nil {
		return nil, err
	}
	files[MetadataFile] = b
	report(Progress{Stage: StageWrite, Message: "wrote " + out.URI("")})
	return &Layout{URI: out.URI(""), Metadata: md, Files: files}, nil
}

// columnsOf lays rows held in memory out as columns.
func columnsOf(rows []offline.Row, width int) *offline.Columns {
	c := &offline.Columns{EventTimes: make([]int64, len(rows)), Labels: make([]int32, len(rows)), Values: make([]float32, 0, len(rows)*width), Width: width}
	for i, r := range rows {
		if len(r.Features) != width {
			c.Width = -1 // refused by the caller's width check
			return c
		}
		c.EventTimes[i], c.Labels[i] = r.EventTime.UnixMilli(), r.Label
		c.Values = append(c.Values, r.Features...)
	}
	return c
}

// splitByTime orders the examples by event time (ties in their order in
// the training set) and splits them: the latest frac of them (with every
// example sharing the boundary's millisecond) validate, the examples
// before the cutoff minus gap train, and those in between are dropped.
func splitByTime(c *offline.Columns, frac float64, gap time.Duration) (Split, []int, []int, error) {
	n := c.Len()
	if n < 2 {
		return Split{}, nil, nil, fmt.Errorf("%d examples: too few to split", n)
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int { return cmp.Compare(c.EventTimes[a], c.EventTimes[b]) })
	nVal := min(max(int(math.Round(frac*float64(n))), 1), n-1)
	cutoff := c.EventTimes[idx[n-nVal]]
	first := func(ms int64) int {
		return sort.Search(n, func(k int) bool { return c.EventTimes[idx[k]] >= ms })
	}
	valStart := first(cutoff)
	trainEnd := cutoff - gap.Milliseconds()
	trainStop := first(trainEnd)
	s := Split{
		Cutoff: time.UnixMilli(cutoff).UTC(), TrainEnd: time.UnixMilli(trainEnd).UTC(), Gap: Duration(gap),
		TrainRows: int64(trainStop), ValidationRows: int64(n - valStart), GapRows: int64(valStart - trainStop),
	}
	for _, i := range idx[:trainStop] {
		s.TrainPositives += int64(c.Labels[i])
	}
	for _, i := range idx[valStart:] {
		s.ValidationPositives += int64(c.Labels[i])
	}
	switch {
	case s.TrainRows == 0:
		return Split{}, nil, nil, fmt.Errorf("no training examples before %s (validation from %s minus the %s gap): the training set spans too little time",
			s.TrainEnd.Format(time.RFC3339), s.Cutoff.Format(time.RFC3339), gap)
	case s.TrainPositives == 0 || s.TrainPositives == s.TrainRows:
		return Split{}, nil, nil, fmt.Errorf("the %d training examples are all labelled %d: nothing to learn", s.TrainRows, c.Labels[idx[0]])
	case s.ValidationPositives == 0 || s.ValidationPositives == s.ValidationRows:
		return Split{}, nil, nil, fmt.Errorf("the %d validation examples from %s are all labelled the same: AUC is undefined; use more data or a larger validation fraction",
			s.ValidationRows, s.Cutoff.Format(time.RFC3339))
	}
	return s, idx[:trainStop], idx[valStart:], nil
}

// dataset copies the examples idx into a ranker dataset.
func dataset(c *offline.Columns, idx []int) ranker.Dataset {
	d := ranker.Dataset{Width: c.Width, Rows: make([]float32, 0, len(idx)*c.Width), Labels: make([]float32, len(idx))}
	for k, i := range idx {
		d.Rows = append(d.Rows, c.Row(i)...)
		d.Labels[k] = float32(c.Labels[i])
	}
	return d
}

// evaluate measures scores against labels, with the log loss of a constant
// prediction of the training part's positive rate as a baseline.
func evaluate(scores, labels []float32, trainRate float64) (map[string]float64, error) {
	auc, err := ranker.AUC(scores, labels)
	if err != nil {
		return nil, err
	}
	loss, err := ranker.LogLoss(scores, labels)
	if err != nil {
		return nil, err
	}
	constant := make([]float32, len(labels))
	var positives float64
	for i, y := range labels {
		constant[i] = float32(trainRate)
		positives += float64(y)
	}
	base, err := ranker.LogLoss(constant, labels)
	if err != nil {
		return nil, err
	}
	return map[string]float64{
		MetricAUC: auc, MetricLogLoss: loss, "baseline_logloss": base,
		"validation_positive_rate": positives / float64(len(labels)),
	}, nil
}

// itemModels are what the embeddings stage hands on: the trained item
// vectors, their IVF index, the trained user vectors by id, and the
// positives the co-visitation table learns from.
type itemModels struct {
	meta  Embeddings
	model *retrieval.Model
	index *retrieval.Index
	users *retrieval.UserVectors
	// visits are the positives of the event range, one per event.
	visits []covisit.Interaction
}

// eventRange resolves the event range the embeddings' positives come from:
// the Input's, with From defaulting to DefaultEmbeddingLookback before the
// training set's first example (trainingFrom) and To cut to the split's
// cutoff, so nothing at or after the first validation example is read.
// Command resolves it the same way to check the range an external program
// recorded.
func eventRange(in Input, trainingFrom, cutoff time.Time) (Embeddings, error) {
	e := Embeddings{Topic: cmp.Or(in.Events.Topic, events.TopicInteractions), From: in.Events.From, To: in.Events.To}
	if e.From.IsZero() {
		e.From = trainingFrom.Add(-DefaultEmbeddingLookback)
	}
	if e.To.IsZero() || e.To.After(cutoff) {
		e.To = cutoff
	}
	if !e.From.Before(e.To) {
		return Embeddings{}, fmt.Errorf("embeddings: events from %s to the cutoff %s: an empty range", e.From.Format(time.RFC3339), e.To.Format(time.RFC3339))
	}
	return e, nil
}

// positiveSet holds the positives of an event range. Users and items are
// numbered in the order first seen; sortedIDs turns that into id order.
type positiveSet struct {
	users, items map[string]int32
	// strength sums the weights of each user–item pair.
	strength map[[2]int32]float64
	// visits are the positives, one per event, in the order read: what
	// the co-visitation table learns from.
	visits []covisit.Interaction
}

// readPositives reads the events of e's range from src and keeps those
// whose action has a weight and that name a user and an item, counting
// e.EventsRead and e.Positives. The embeddings (GoTrainer) and the
// co-visitation table (GoTrainer, and Command for a program that did not
// build one) both learn from exactly this set.
func readPositives(ctx context.Context, src eventlog.Source, e *Embeddings, weights map[string]float64) (*positiveSet, error) {
	s := &positiveSet{users: map[string]int32{}, items: map[string]int32{}, strength: map[[2]int32]float64{}}
	// names hold one copy of every id, which the co-visitation
	// interactions share.
	var userNames, itemNames []string
	id := func(m map[string]int32, names *[]string, v string) int32 {
		k, ok := m[v]
		if !ok {
			k = int32(len(m))
			v = strings.Clone(v)
			m[v] = k
			*names = append(*names, v)
		}
		return k
	}
	err := eventlog.Scan(ctx, src, e.Topic, e.From, e.To, func(r *eventlog.Row) error {
		e.EventsRead++
		w, ok := weights[r.Action]
		if !ok || r.UserID == "" || r.ItemID == "" {
			return nil
		}
		e.Positives++
		u, i := id(s.users, &userNames, r.UserID), id(s.items, &itemNames, r.ItemID)
		s.strength[[2]int32{u, i}] += w
		s.visits = append(s.visits, covisit.Interaction{User: userNames[u], Item: itemNames[i], Time: r.EventTime, Weight: float32(w)})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("embeddings: read %s: %w", e.Topic, err)
	}
	if len(s.strength) == 0 {
		return nil, fmt.Errorf("embeddings: no positive interactions (%s) in %d events of %s in [%s, %s)",
			strings.Join(slices.Sorted(maps.Keys(weights)), ", "), e.EventsRead, e.Topic, e.From.Format(time.RFC3339), e.To.Format(time.RFC3339))
	}
	return s, nil
}

// embeddings reads the positives before the cutoff, trains ALS, keeps the
// user vectors by id and builds the item index.
func (g *GoTrainer) embeddings(ctx context.Context, in Input, m offline.Manifest, cutoff time.Time,
	report func(Progress), timed func(string)) (*itemModels, error) {
	p := in.Params.Embeddings
	e, err := eventRange(in, m.From, cutoff)
	if err != nil {
		return nil, err
	}
	report(Progress{Stage: StageEmbeddings, Message: fmt.Sprintf("reading positives of %s in [%s, %s)", e.Topic, e.From.Format(time.RFC3339), e.To.Format(time.RFC3339))})
	pos, err := readPositives(ctx, g.Store, &e, p.Weights)
	if err != nil {
		return nil, err
	}
	// Dense indexes in id order, interactions in (user, item) order: the
	// result does not depend on the order the log was read in.
	userIDs, userOf := sortedIDs(pos.users)
	itemIDs, itemOf := sortedIDs(pos.items)
	data := make([]retrieval.Interaction, 0, len(pos.strength))
	for k, s := range pos.strength {
		data = append(data, retrieval.Interaction{User: userOf[k[0]], Item: itemOf[k[1]], Strength: float32(s)})
	}
	slices.SortFunc(data, func(a, b retrieval.Interaction) int {
		return cmp.Or(cmp.Compare(a.User, b.User), cmp.Compare(a.Item, b.Item))
	})
	e.Pairs, e.Users, e.Items = int64(len(data)), len(userIDs), len(itemIDs)
	report(Progress{Stage: StageEmbeddings, Message: fmt.Sprintf("%d positives of %d events: %d pairs, %d users, %d items",
		e.Positives, e.EventsRead, e.Pairs, e.Users, e.Items)})

	cfg := p.config(in.Params.Seed, g.Workers)
	cfg.Progress = func(rp retrieval.Progress) {
		report(Progress{Stage: StageEmbeddings, Step: rp.Iteration, Steps: rp.Iterations,
			Message: fmt.Sprintf("ALS iteration %d/%d: loss %.6g", rp.Iteration, rp.Iterations, rp.Loss), Metrics: map[string]float64{"loss": rp.Loss}})
	}
	model, err := retrieval.Train(ctx, len(userIDs), len(itemIDs), data, cfg)
	if err != nil {
		return nil, fmt.Errorf("embeddings: %w", err)
	}
	// The user factors of the same run as the item vectors, so that a
	// stored user vector scores the index's items as the model does.
	users, err := model.UserVectors(userIDs)
	if err != nil {
		return nil, fmt.Errorf("embeddings: user vectors: %w", err)
	}
	report(Progress{Stage: StageEmbeddings, Message: fmt.Sprintf("user vectors: %d users of %d dims for %s", users.Len(), users.Dims(), UsersFile)})
	timed("embeddings")
	index, err := model.BuildIndex(ctx, itemIDs, retrieval.IndexConfig{Lists: p.Lists, NProbe: p.NProbe, Seed: in.Params.Seed, Workers: g.Workers})
	if err != nil {
		return nil, fmt.Errorf("embeddings: index: %w", err)
	}
	e.Dims, e.Lists, e.NProbe = index.Dims(), index.Lists(), index.NProbe()
	report(Progress{Stage: StageIndex, Message: fmt.Sprintf("IVF index: %d items of %d dims in %d lists, nprobe %d", index.Len(), index.Dims(), index.Lists(), index.NProbe())})
	timed("index")
	return &itemModels{meta: e, model: model, index: index, users: users, visits: pos.visits}, nil
}

// annIndex builds the HNSW index over the ALS item vectors: items rows of
// dims values, row i the vector of the IVF index's item i. Its ids are
// those item indexes, so serving maps a hit through items.ivf's id table.
// GoTrainer passes the model's factors, Command the vectors it reads back
// from an external program's items.ivf; the same vectors, parameters and
// seed give the same bytes.
func (g *GoTrainer) annIndex(ctx context.Context, p Params, vectors []float32, items, dims int, report func(Progress)) (*ann.Index, ANNIndex, error) {
	cfg := p.ANN.config(p.Seed, g.Workers)
	report(Progress{Stage: StageANN, Message: fmt.Sprintf("building the HNSW index over %d items of %d dims (M %d, efConstruction %d)",
		items, dims, cfg.M, cfg.EfConstruction)})
	start := time.Now()
	ids := make([]int32, items)
	for i := range ids {
		ids[i] = int32(i)
	}
	x, err := ann.Build(ctx, ids, vectors, dims, cfg)
	if err != nil {
		return nil, ANNIndex{}, fmt.Errorf("ann index: %w", err)
	}
	md := ANNIndex{Items: x.Len(), Dims: x.Dims(), M: x.M(), EfConstruction: x.EfConstruction(), EfSearch: x.EfSearch(),
		NormRatio: x.NormRatio(), Bands: x.Bands()}
	report(Progress{Stage: StageANN, Message: fmt.Sprintf("HNSW index: %d items in %d norm bands, built in %.1fs",
		x.Len(), x.Bands(), time.Since(start).Seconds()), Metrics: map[string]float64{"seconds": time.Since(start).Seconds()}})
	return x, md, nil
}

// covisitTable builds the co-visitation table from the embeddings'
// positives (visits). Its items are the IVF index's (items of them), in
// the same (id) order, as both number the items with a positive in id
// order.
func (g *GoTrainer) covisitTable(ctx context.Context, p Params, visits []covisit.Interaction, items int, report func(Progress)) (*covisit.Table, CovisitTable, error) {
	cfg := p.Covisit.config(g.Workers)
	report(Progress{Stage: StageCovisit, Message: fmt.Sprintf("co-visitation table from %d positives (window %s, %d neighbours per item)",
		len(visits), cfg.Window, cfg.Neighbours)})
	t, err := covisit.Build(ctx, visits, cfg)
	if err != nil {
		return nil, CovisitTable{}, fmt.Errorf("co-visitation table: %w", err)
	}
	if t.Len() != items {
		// The callers check the positives name the index's items; a
		// mismatch here is a bug, and serving would map indexes to the
		// wrong items.
		return nil, CovisitTable{}, fmt.Errorf("co-visitation table: %d items, the IVF index %d", t.Len(), items)
	}
	md := CovisitTable{Items: t.Len(), Edges: int64(t.Edges())}
	for i := range int32(t.Len()) {
		if nbr, _ := t.Neighbours(i); len(nbr) > 0 {
			md.ItemsWithNeighbours++
		}
	}
	report(Progress{Stage: StageCovisit, Message: fmt.Sprintf("co-visitation table: %d of %d items have neighbours, %d in all",
		md.ItemsWithNeighbours, md.Items, md.Edges)})
	return t, md, nil
}

// sortedIDs returns the ids in order and, for each first-seen index, its
// position in that order.
func sortedIDs(m map[string]int32) ([]string, []int32) {
	ids := slices.Sorted(maps.Keys(m))
	pos := make([]int32, len(ids))
	for i, s := range ids {
		pos[m[s]] = int32(i)
	}
	return ids, pos
}
