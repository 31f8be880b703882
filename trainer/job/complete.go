package job

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// complete derives the serving artifacts an external program's layout
// lacks (see Command): users.emb by folding every user of the job's
// positives in against items.ivf's vectors, items.ann from items.ivf's
// vectors and covisit.bin from the positives of the job's event range,
// the last two as GoTrainer builds them, then rewrites metadata.json as
// format MetadataFormat with their sections, marked BuiltByRunner, and
// their sizes and SHA-256. A layout that lists all three, or that
// CheckLayout refuses before any of this matters (no or undecodable
// metadata.json, an unknown format), is left untouched for CheckLayout to
// judge. Nothing is written unless everything was derived, and
// metadata.json is written last, so a failure leaves the program's
// metadata, which CheckLayout refuses (format 1) or reads as it was.
func (c *Command) complete(ctx context.Context, in Input, out Dir, report func(Progress)) error {
	b, err := out.Get(ctx, MetadataFile)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	var md Metadata
	var raw map[string]json.RawMessage
	if json.Unmarshal(b, &md) != nil || json.Unmarshal(b, &raw) != nil {
		return nil
	}
	if md.Format != 1 && md.Format != MetadataFormat {
		return nil
	}
	listed := map[string]bool{}
	for _, a := range md.Artifacts {
		listed[a.Name] = true
	}
	var missing, fromPositives []string
	for _, name := range []string{UsersFile, ANNFile, CovisitFile} {
		if !listed[name] {
			missing = append(missing, name)
			if name != ANNFile {
				fromPositives = append(fromPositives, name)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	uri := out.URI("")
	// Another job's layout must not be rewritten as this one's.
	if err := sameJob(uri, md, in); err != nil {
		return err
	}
	invalid := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrInvalidLayout, uri, fmt.Sprintf(format, args...))
	}
	ivf, err := readIndex(ctx, out, md, missing)
	if err != nil {
		return err
	}
	// The stages in the order the Go trainer runs them: the user vectors
	// belong to the embeddings.
	first := StageEmbeddings
	switch {
	case listed[UsersFile] && !listed[ANNFile]:
		first = StageANN
	case listed[UsersFile]:
		first = StageCovisit
	}
	report(Progress{Stage: first, Message: fmt.Sprintf("the program's layout (metadata format %d) lacks %s: the runner derives them",
		md.Format, strings.Join(missing, " and "))})

	g := &GoTrainer{}
	files := map[string][]byte{}
	timings := map[string]float64{}
	var pos *positiveSet
	if len(fromPositives) > 0 {
		start := time.Now()
		stage := StageCovisit
		if !listed[UsersFile] {
			stage = StageEmbeddings
		}
		if pos, err = c.positives(ctx, in, md, ivf, stage, fromPositives, report, invalid); err != nil {
			return err
		}
		timings["positives"] = time.Since(start).Seconds()
	}
	if !listed[UsersFile] {
		start := time.Now()
		report(Progress{Stage: StageEmbeddings, Message: fmt.Sprintf("folding %d users in from their positives against %s's vectors", len(pos.users), IndexFile)})
		u, err := foldInUsers(ctx, pos, ivf, g.Workers)
		if err != nil {
			if errors.Is(err, retrieval.ErrNoFoldIn) {
				return invalid("%s: %v: the runner folds the users in with its regularization and alpha", IndexFile, err)
			}
			return fmt.Errorf("derive %s: %w", UsersFile, err)
		}
		var buf bytes.Buffer
		if err := u.Save(&buf); err != nil {
			return fmt.Errorf("derive %s: %w", UsersFile, err)
		}
		md.UserVectors, files[UsersFile] = UserVectors{BuiltBy: BuiltByRunner, Users: u.Len(), Dims: u.Dims()}, buf.Bytes()
		timings["users"] = time.Since(start).Seconds()
		report(Progress{Stage: StageEmbeddings, Message: fmt.Sprintf("%s: %d users of %d dims in %.1fs", UsersFile, u.Len(), u.Dims(), timings["users"]),
			Metrics: map[string]float64{"seconds": timings["users"]}})
	}
	if !listed[ANNFile] {
		start := time.Now()
		vecs := make([]float32, 0, ivf.Len()*ivf.Dims())
		for i := range int32(ivf.Len()) {
			vecs = append(vecs, ivf.Vector(i)...)
		}
		x, annMD, err := g.annIndex(ctx, in.Params, vecs, ivf.Len(), ivf.Dims(), report)
		if err != nil {
			return fmt.Errorf("derive %s: %w", ANNFile, err)
		}
		var buf bytes.Buffer
		if err := x.Save(&buf); err != nil {
			return fmt.Errorf("derive %s: %w", ANNFile, err)
		}
		annMD.BuiltBy = BuiltByRunner
		md.ANN, files[ANNFile] = annMD, buf.Bytes()
		timings["ann"] = time.Since(start).Seconds()
	}
	if !listed[CovisitFile] {
		start := time.Now()
		t, covMD, err := g.covisitTable(ctx, in.Params, pos.visits, ivf.Len(), report)
		if err != nil {
			return fmt.Errorf("derive %s: %w", CovisitFile, err)
		}
		var buf bytes.Buffer
		if err := t.Save(&buf); err != nil {
			return fmt.Errorf("derive %s: %w", CovisitFile, err)
		}
		covMD.BuiltBy = BuiltByRunner
		md.Covisit, files[CovisitFile] = covMD, buf.Bytes()
		timings["covisit"] = time.Since(start).Seconds()
	}

	// Artifacts, then the metadata: the program's fields as it wrote them
	// (any it added included), with the format, the new sections and the
	// parameters that built them.
	for _, r := range layoutRoles {
		if data, ok := files[r.name]; ok {
			md.Artifacts = append(md.Artifacts, artifactOf(r.name, r.role, data))
			if err := out.Put(ctx, r.name, data); err != nil {
				return err
			}
		}
	}
	params := map[string]json.RawMessage{}
	if p, ok := raw["params"]; ok && string(p) != "null" {
		if err := json.Unmarshal(p, &params); err != nil {
			return invalid("params: %v", err)
		}
	}
	if t, ok := raw["timings_s"]; ok && string(t) != "null" {
		var prior map[string]float64
		if err := json.Unmarshal(t, &prior); err != nil {
			return invalid("timings_s: %v", err)
		}
		for k, v := range prior {
			if _, ok := timings[k]; !ok {
				timings[k] = v
			}
		}
	}
	set := map[string]any{"format": MetadataFormat, "artifacts": md.Artifacts, "timings_s": timings}
	if _, ok := files[UsersFile]; ok {
		set["user_vectors"] = md.UserVectors
	}
	if _, ok := files[ANNFile]; ok {
		set["ann"], params["ann"] = md.ANN, mustJSON(in.Params.ANN)
	}
	if _, ok := files[CovisitFile]; ok {
		set["covisit"], params["covisit"] = md.Covisit, mustJSON(in.Params.Covisit)
	}
	set["params"] = params
	for k, v := range set {
		raw[k] = mustJSON(v)
	}
	nb, err := json.MarshalIndent(raw, "", "  ")
	if err != nil {
		return fmt.Errorf("encode training job metadata: %w", err)
	}
	if err := out.Put(ctx, MetadataFile, append(nb, '\n')); err != nil {
		return err
	}
	report(Progress{Stage: StageWrite, Message: fmt.Sprintf("wrote %s and %s (format %d) into %s", strings.Join(missing, ", "), MetadataFile, MetadataFormat, uri)})
	return nil
}

// positives reads the positives of the job's event range from the store,
// for the artifacts (names) the runner derives from them, after checking
// that the program's embeddings read that range (the input's events up to
// the split's cutoff) and counted the same positives, and that those
// positives name exactly items.ivf's items: derived artifacts must learn
// from what the embeddings learned from.
func (c *Command) positives(ctx context.Context, in Input, md Metadata, ivf *retrieval.Index, stage Stage, names []string,
	report func(Progress), invalid func(format string, args ...any) error) (*positiveSet, error) {
	what := strings.Join(names, " and ")
	st, err := c.store(ctx, in, what)
	if err != nil {
		return nil, err
	}
	m, err := offline.ReadManifest(ctx, st, in.TrainingSet)
	if err != nil {
		return nil, fmt.Errorf("derive %s: %w", what, err)
	}
	if md.Split.Cutoff.IsZero() {
		return nil, invalid("metadata.json has no split.cutoff: the runner needs it to find the embeddings' event range")
	}
	e, err := eventRange(in, m.From, md.Split.Cutoff)
	if err != nil {
		return nil, invalid("%v", err)
	}
	got := md.Embeddings
	if got.Topic != e.Topic || !got.From.Equal(e.From) || !got.To.Equal(e.To) {
		return nil, invalid("the program's embeddings read %s in [%s, %s), but the job's event range is %s in [%s, %s) (the input's events up to the split's cutoff %s): "+
			"%s must learn from the embeddings' positives; read the job's range",
			got.Topic, rfc3339(got.From), rfc3339(got.To), e.Topic, rfc3339(e.From), rfc3339(e.To), rfc3339(md.Split.Cutoff), what)
	}
	report(Progress{Stage: stage, Message: fmt.Sprintf("reading positives of %s in [%s, %s)", e.Topic, rfc3339(e.From), rfc3339(e.To))})
	pos, err := readPositives(ctx, st, &e, in.Params.Embeddings.Weights)
	if err != nil {
		return nil, fmt.Errorf("derive %s: %w", what, err)
	}
	if e.Positives != got.Positives {
		return nil, invalid("the job's event range holds %d positives (weights %v), the program's embeddings counted %d: %s would not learn from the embeddings' positives",
			e.Positives, in.Params.Embeddings.Weights, got.Positives, what)
	}
	if err := sameItems(pos, ivf); err != nil {
		return nil, invalid("%v: the items of %s must be %s's, in its order", err, what, IndexFile)
	}
	return pos, nil
}

// foldInUsers returns the vectors of every user of the positives, each
// folded in (Index.Embedder) from the user's positives, with the strengths
// the embeddings train on, against the index's item vectors: the vector
// ALS gives the user against those items, which for the Go trainer's own
// items.ivf is its trained user factors bit for bit. The positives must
// name the index's items in id order (sameItems). Users are split over
// workers goroutines (0: GOMAXPROCS); the result does not depend on it.
func foldInUsers(ctx context.Context, pos *positiveSet, ivf *retrieval.Index, workers int) (*retrieval.UserVectors, error) {
	emb, err := ivf.Embedder()
	if err != nil {
		return nil, err
	}
	userIDs, userOf := sortedIDs(pos.users)
	_, itemOf := sortedIDs(pos.items)
	// Each user's pairs, user after user.
	n, d := len(userIDs), ivf.Dims()
	off := make([]int, n+1)
	for k := range pos.strength {
		off[userOf[k[0]]+1]++
	}
	for u := range n {
		off[u+1] += off[u]
	}
	items := make([]int32, len(pos.strength))
	strengths := make([]float32, len(pos.strength))
	next := slices.Clone(off[:n])
	for k, s := range pos.strength {
		u := userOf[k[0]]
		items[next[u]], strengths[next[u]] = itemOf[k[1]], float32(s)
		next[u]++
	}
	vecs := make([]float32, n*d)
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	const chunk = 256
	var nextChunk atomic.Int64
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for {
				lo := int(nextChunk.Add(chunk)) - chunk
				if lo >= n || ctx.Err() != nil {
					return
				}
				for u := lo; u < min(lo+chunk, n); u++ {
					// Embed writes into dst in place: its capacity is dims.
					dst := vecs[u*d : (u+1)*d : (u+1)*d]
					if _, err := emb.Embed(dst, items[off[u]:off[u+1]], strengths[off[u]:off[u+1]]); err != nil {
						errs[w] = fmt.Errorf("user %q: %w", userIDs[u], err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return retrieval.NewUserVectors(userIDs, vecs, d)
}

// readIndex reads the layout's items.ivf, checked against its metadata:
// the runner builds only from the bytes the program vouched for.
func readIndex(ctx context.Context, out Dir, md Metadata, missing []string) (*retrieval.Index, error) {
	uri := out.URI("")
	var listed *Artifact
	for i := range md.Artifacts {
		if md.Artifacts[i].Name == IndexFile {
			listed = &md.Artifacts[i]
		}
	}
	why := fmt.Sprintf("the runner derives %s from it", strings.Join(missing, " and "))
	if listed == nil {
		return nil, fmt.Errorf("%w: %s: metadata.json lists no %s: %s", ErrInvalidLayout, uri, IndexFile, why)
	}
	data, err := out.Get(ctx, IndexFile)
	if errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("%w: %s: artifact %s is listed but missing: %s", ErrInvalidLayout, uri, IndexFile, why)
	}
	if err != nil {
		return nil, err
	}
	if got := artifactOf(IndexFile, listed.Role, data); got.Bytes != listed.Bytes || got.SHA256 != listed.SHA256 {
		return nil, fmt.Errorf("%w: %s: artifact %s has %d bytes and SHA-256 %s, the metadata says %d and %s", ErrInvalidLayout, uri,
			IndexFile, got.Bytes, got.SHA256, listed.Bytes, listed.SHA256)
	}
	x, err := retrieval.Load(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s: %v: %s", ErrInvalidLayout, uri, IndexFile, err, why)
	}
	if x.Len() != md.Embeddings.Items || x.Dims() != md.Embeddings.Dims {
		return nil, fmt.Errorf("%w: %s: %s holds %d items of %d dims, the metadata says %d of %d", ErrInvalidLayout, uri,
			IndexFile, x.Len(), x.Dims(), md.Embeddings.Items, md.Embeddings.Dims)
	}
	return x, nil
}

// sameItems checks that the positives name exactly the index's items: the
// co-visitation table numbers them in id order, as the Go trainer's (and
// the reference program's) embeddings do.
func sameItems(pos *positiveSet, ivf *retrieval.Index) error {
	ids, _ := sortedIDs(pos.items)
	if len(ids) != ivf.Len() {
		return fmt.Errorf("the job's positives name %d items, %s holds %d", len(ids), IndexFile, ivf.Len())
	}
	for i, id := range ids {
		if ivf.ID(int32(i)) != id {
			return fmt.Errorf("item %d of the job's positives in id order is %q, in %s %q", i, id, IndexFile, ivf.ID(int32(i)))
		}
	}
	return nil
}

// sameJob checks that a layout's metadata is the job's.
func sameJob(uri string, md Metadata, in Input) error {
	if md.JobID != in.JobID || md.TrainingSet != in.TrainingSet {
		return fmt.Errorf("%w: %s: wrote job %s on training set %s, not job %s on %s",
			ErrInvalidLayout, uri, md.JobID, md.TrainingSet, in.JobID, in.TrainingSet)
	}
	return nil
}

// store is where the runner reads the job's positives to derive what:
// Store, else the store Input.Store names, through S3.
func (c *Command) store(ctx context.Context, in Input, what string) (offline.Store, error) {
	if c.Store != nil {
		return c.Store, nil
	}
	var cfg config.S3
	if c.S3 != nil {
		cfg = *c.S3
	}
	st, err := OpenStore(ctx, in.Store, cfg)
	if err != nil {
		return nil, fmt.Errorf("derive %s from the job's positives: %w (or set Command.Store)", what, err)
	}
	return st, nil
}

func rfc3339(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// mustJSON encodes values that always encode: metadata sections and
// parameters of plain fields, and maps with string keys.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("job: encode metadata field: %v", err))
	}
	return b
}
