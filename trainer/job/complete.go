package job

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/adaptrec/adaptrec/features/offline"
	"github.com/adaptrec/adaptrec/internal/config"
	"github.com/adaptrec/adaptrec/trainer/retrieval"
)

// complete derives the serving indexes an external program's layout lacks
// (see Command): items.ann from items.ivf's vectors and covisit.bin from
// the positives of the job's event range, each as GoTrainer builds it,
// then rewrites metadata.json as format MetadataFormat with their
// sections, marked BuiltByRunner, and their sizes and SHA-256. A layout
// that lists both, or that CheckLayout refuses before any of this matters
// (no or undecodable metadata.json, an unknown format), is left untouched
// for CheckLayout to judge. Nothing is written unless everything was
// derived, and metadata.json is written last, so a failure leaves the
// program's metadata, which CheckLayout refuses.
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
	var missing []string
	for _, name := range []string{ANNFile, CovisitFile} {
		if !listed[name] {
			missing = append(missing, name)
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
	first := StageANN
	if listed[ANNFile] {
		first = StageCovisit
	}
	report(Progress{Stage: first, Message: fmt.Sprintf("the program's layout (metadata format %d) lacks %s: the runner derives them as the Go trainer builds them",
		md.Format, strings.Join(missing, " and "))})

	g := &GoTrainer{}
	files := map[string][]byte{}
	timings := map[string]float64{}
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
		st, err := c.store(ctx, in)
		if err != nil {
			return err
		}
		m, err := offline.ReadManifest(ctx, st, in.TrainingSet)
		if err != nil {
			return fmt.Errorf("derive %s: %w", CovisitFile, err)
		}
		if md.Split.Cutoff.IsZero() {
			return invalid("metadata.json has no split.cutoff: the runner needs it to find the embeddings' event range")
		}
		e, err := eventRange(in, m.From, md.Split.Cutoff)
		if err != nil {
			return invalid("%v", err)
		}
		got := md.Embeddings
		if got.Topic != e.Topic || !got.From.Equal(e.From) || !got.To.Equal(e.To) {
			return invalid("the program's embeddings read %s in [%s, %s), but the job's event range is %s in [%s, %s) (the input's events up to the split's cutoff %s): "+
				"covisit.bin must learn from the embeddings' positives; read the job's range",
				got.Topic, rfc3339(got.From), rfc3339(got.To), e.Topic, rfc3339(e.From), rfc3339(e.To), rfc3339(md.Split.Cutoff))
		}
		report(Progress{Stage: StageCovisit, Message: fmt.Sprintf("reading positives of %s in [%s, %s)", e.Topic, rfc3339(e.From), rfc3339(e.To))})
		pos, err := readPositives(ctx, st, &e, in.Params.Embeddings.Weights)
		if err != nil {
			return fmt.Errorf("derive %s: %w", CovisitFile, err)
		}
		if e.Positives != got.Positives {
			return invalid("the job's event range holds %d positives (weights %v), the program's embeddings counted %d: covisit.bin would not learn from the embeddings' positives",
				e.Positives, in.Params.Embeddings.Weights, got.Positives)
		}
		if err := sameItems(pos, ivf); err != nil {
			return invalid("%v: covisit.bin's items must be %s's, in its order", err, IndexFile)
		}
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

// store is where the runner reads the job's positives: Store, else the
// store Input.Store names, through S3.
func (c *Command) store(ctx context.Context, in Input) (offline.Store, error) {
	if c.Store != nil {
		return c.Store, nil
	}
	var cfg config.S3
	if c.S3 != nil {
		cfg = *c.S3
	}
	st, err := OpenStore(ctx, in.Store, cfg)
	if err != nil {
		return nil, fmt.Errorf("derive %s from the job's positives: %w (or set Command.Store)", CovisitFile, err)
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
