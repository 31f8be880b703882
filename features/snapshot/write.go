package snapshot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/internal/objstore"
)

// Row is one entity's values in a snapshot.
type Row struct {
	// EntityID is a user id, an item id, or PairID(user, item).
	EntityID string
	// Values holds Manifest.Width values: the fixed-width features in the
	// order of Manifest.Features, ints as exact doubles, vectors expanded.
	Values []float64
	// Maps holds one map per Manifest.MapFeatures; nil (or a nil map)
	// means the feature's default, an empty map.
	Maps []map[string]float64
}

// fileRow is a Row as stored in a Parquet part.
type fileRow struct {
	EntityID string     `parquet:"entity_id"`
	Values   []float64  `parquet:"values,list"`
	Maps     []mapEntry `parquet:"map_entries,list"`
}

// mapEntry is one entry of map feature number Feature (an index into
// Manifest.MapFeatures).
type mapEntry struct {
	Feature int32   `parquet:"feature"`
	Key     string  `parquet:"key"`
	Value   float64 `parquet:"value"`
}

// DefaultRowsPerFile is the most rows a data file holds unless
// WriteOptions.RowsPerFile says otherwise.
const DefaultRowsPerFile = 200_000

// WriteOptions tune Write. Zero values mean the documented defaults.
type WriteOptions struct {
	// NotComputed maps a feature of the group to why the job left it at its
	// default for every row; recorded in its FeatureStats.
	NotComputed map[string]string
	// CreatedAt is recorded in the manifest; the current time when zero.
	CreatedAt time.Time
	// RowsPerFile caps rows per data file; DefaultRowsPerFile when zero.
	RowsPerFile int
}

// Layout returns how a group's features are laid out in snapshot rows: the
// fixed-width features in value order with their types, the width, and the
// map features. It refuses groups that are not batch groups of fs.
func Layout(fs *features.FeatureSet, group string) (names, types []string, width int, maps []string, err error) {
	g, err := lookupGroup(fs, group)
	if err != nil {
		return nil, nil, 0, nil, err
	}
	for _, f := range g.Features {
		switch {
		case f.Type.Kind == features.KindMap:
			maps = append(maps, f.Name)
		case f.Type.Width() > 0:
			names = append(names, f.Name)
			types = append(types, f.Type.String())
			width += f.Type.Width()
		default:
			return nil, nil, 0, nil, fmt.Errorf("%w: %s is a %s; snapshots hold fixed-width and map features", ErrInvalid, f.Name, f.Type)
		}
	}
	return names, types, width, maps, nil
}

func lookupGroup(fs *features.FeatureSet, group string) (features.Group, error) {
	if err := checkGroup(group); err != nil {
		return features.Group{}, err
	}
	for _, g := range fs.Groups() {
		if g.Name != group {
			continue
		}
		if g.Lane != features.LaneBatch {
			return features.Group{}, fmt.Errorf("%w: group %s is in the %s lane; snapshots hold batch groups", ErrInvalid, group, g.Lane)
		}
		return g, nil
	}
	var known []string
	for _, g := range fs.Groups() {
		if g.Lane == features.LaneBatch {
			known = append(known, g.Name)
		}
	}
	return features.Group{}, fmt.Errorf("%w: %s defines no group %q (batch groups: %s)", ErrInvalid, fs.Source(), group, strings.Join(known, ", "))
}

// Write stores rows as a new snapshot of group with data cutoff asOf and
// returns its manifest. It sorts rows by entity id in place, refuses
// repeated or empty ids and rows of the wrong width, writes the data files
// and then the manifest, and never touches the current pointer (Flip does).
//
// The version is derived from the content, so writing the same rows for
// the same cutoff again returns the manifest already stored (with its
// original CreatedAt); a different snapshot can never be stored under an
// existing version.
func Write(ctx context.Context, st Store, fs *features.FeatureSet, group string, asOf time.Time, rows []Row, opts WriteOptions) (Manifest, error) {
	names, types, width, maps, err := Layout(fs, group)
	if err != nil {
		return Manifest{}, err
	}
	g, _ := lookupGroup(fs, group)
	if asOf.IsZero() {
		return Manifest{}, fmt.Errorf("%w: %s: as-of time required", ErrInvalid, group)
	}
	asOf = asOf.UTC().Truncate(time.Second)
	for name := range opts.NotComputed {
		if !slices.Contains(names, name) && !slices.Contains(maps, name) {
			return Manifest{}, fmt.Errorf("%w: %s: NotComputed names %s, not a feature of the group", ErrInvalid, group, name)
		}
	}
	slices.SortFunc(rows, func(a, b Row) int { return strings.Compare(a.EntityID, b.EntityID) })
	for i := range rows {
		r := &rows[i]
		switch {
		case r.EntityID == "":
			return Manifest{}, fmt.Errorf("%w: %s: a row has an empty entity id", ErrInvalid, group)
		case i > 0 && rows[i-1].EntityID == r.EntityID:
			return Manifest{}, fmt.Errorf("%w: %s: entity %q has two rows", ErrInvalid, group, r.EntityID)
		case len(r.Values) != width:
			return Manifest{}, fmt.Errorf("%w: %s: entity %q has %d values, the group's features take %d", ErrInvalid, group, r.EntityID, len(r.Values), width)
		case r.Maps != nil && len(r.Maps) != len(maps):
			return Manifest{}, fmt.Errorf("%w: %s: entity %q has %d maps, the group has %d map features", ErrInvalid, group, r.EntityID, len(r.Maps), len(maps))
		}
	}

	m := Manifest{
		Format:      FormatVersion,
		Group:       group,
		Entity:      g.Entity,
		SchemaHash:  fs.SchemaHash(),
		AsOf:        asOf,
		CreatedAt:   opts.CreatedAt,
		Features:    names,
		Types:       types,
		Width:       width,
		MapFeatures: maps,
		Rows:        int64(len(rows)),
		Stats:       computeStats(fs, names, maps, width, rows, opts.NotComputed),
	}
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now()
	}
	m.CreatedAt = m.CreatedAt.UTC()
	m.Version = asOf.Format(versionTime) + "-" + contentHash(&m, rows)

	perFile := opts.RowsPerFile
	if perFile <= 0 {
		perFile = DefaultRowsPerFile
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[fileRow](&buf,
		parquet.Compression(&parquet.Zstd),
		parquet.MaxRowsPerRowGroup(65536),
		parquet.CreatedBy("adaptrec", "features/snapshot", "v1"),
	)
	batch := make([]fileRow, 0, 1024)
	for part, start := 0, 0; start < len(rows) || part == 0; part++ {
		end := min(start+perFile, len(rows))
		buf.Reset()
		w.Reset(&buf)
		for lo := start; lo < end; lo += cap(batch) {
			batch = batch[:0]
			for _, r := range rows[lo:min(lo+cap(batch), end)] {
				batch = append(batch, toFileRow(r))
			}
			if _, err := w.Write(batch); err != nil {
				return Manifest{}, fmt.Errorf("encode %s/%s %s: %w", group, m.Version, partName(part), err)
			}
		}
		if err := w.Close(); err != nil {
			return Manifest{}, fmt.Errorf("encode %s/%s %s: %w", group, m.Version, partName(part), err)
		}
		sum := sha256.Sum256(buf.Bytes())
		f := File{Name: partName(part), Rows: int64(end - start), Bytes: int64(buf.Len()), SHA256: hex.EncodeToString(sum[:])}
		if err := ctx.Err(); err != nil {
			return Manifest{}, err
		}
		if _, err := st.Put(ctx, VersionPrefix(group, m.Version)+f.Name, buf.Bytes(), objstore.PutOptions{ContentType: "application/vnd.apache.parquet"}); err != nil {
			return Manifest{}, fmt.Errorf("write %s/%s: %w", group, m.Version, err)
		}
		m.Files = append(m.Files, f)
		start = end
	}

	body, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, fmt.Errorf("encode manifest of %s/%s: %w", group, m.Version, err)
	}
	_, err = st.Put(ctx, m.Key(), body, objstore.PutOptions{IfNoneMatch: "*", ContentType: "application/json"})
	if errors.Is(err, objstore.ErrPreconditionFailed) {
		// Same version: same cutoff and content hash. Keep what is there
		// if it really is the same snapshot.
		old, rerr := ReadManifest(ctx, st, group, m.Version)
		if rerr != nil {
			return Manifest{}, fmt.Errorf("%s/%s exists and cannot be read: %w", group, m.Version, rerr)
		}
		if !sameFiles(old.Files, m.Files) || old.SchemaHash != m.SchemaHash {
			return Manifest{}, fmt.Errorf("%w: %s/%s already holds other data", ErrCorrupt, group, m.Version)
		}
		return old, nil
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("write manifest of %s/%s: %w", group, m.Version, err)
	}
	return m, nil
}

func sameFiles(a, b []File) bool {
	return slices.EqualFunc(a, b, func(x, y File) bool { return x == y })
}

func toFileRow(r Row) fileRow {
	fr := fileRow{EntityID: r.EntityID, Values: r.Values}
	for i, m := range r.Maps {
		if len(m) == 0 {
			continue
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys) // deterministic bytes for a deterministic version
		for _, k := range keys {
			fr.Maps = append(fr.Maps, mapEntry{Feature: int32(i), Key: k, Value: m[k]})
		}
	}
	return fr
}

// contentHash is the version suffix: 8 hex digits of a SHA-256 over the
// group, schema hash, cutoff and every row, independent of the Parquet
// encoder's version.
func contentHash(m *Manifest, rows []Row) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%d\n%s\n%s\n", m.Group, m.SchemaHash, m.AsOf.Unix(), strings.Join(m.Features, ","), strings.Join(m.MapFeatures, ","))
	var b [8]byte
	for i := range rows {
		r := &rows[i]
		h.Write([]byte(r.EntityID))
		h.Write([]byte{0})
		for _, v := range r.Values {
			binary.LittleEndian.PutUint64(b[:], math.Float64bits(v))
			h.Write(b[:])
		}
		for _, e := range toFileRow(Row{Maps: r.Maps}).Maps {
			fmt.Fprintf(h, "%d\x00%s\x00", e.Feature, e.Key)
			binary.LittleEndian.PutUint64(b[:], math.Float64bits(e.Value))
			h.Write(b[:])
		}
		h.Write([]byte{1})
	}
	return hex.EncodeToString(h.Sum(nil)[:4])
}
