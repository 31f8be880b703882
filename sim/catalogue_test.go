package sim

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func newTestCatalogue(t *testing.T, cfg CatalogueConfig) *Catalogue {
	t.Helper()
	if cfg.Start.IsZero() {
		cfg.Start = testStart
	}
	c, err := NewCatalogue(cfg)
	if err != nil {
		t.Fatalf("NewCatalogue: %v", err)
	}
	return c
}

func catalogueBytes(t *testing.T, c *Catalogue) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := c.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d bytes, wrote %d", n, buf.Len())
	}
	return buf.Bytes()
}

func TestNewCatalogueDeterministic(t *testing.T) {
	t.Parallel()
	a := catalogueBytes(t, newTestCatalogue(t, CatalogueConfig{Seed: 7, Items: 3000}))
	b := catalogueBytes(t, newTestCatalogue(t, CatalogueConfig{Seed: 7, Items: 3000}))
	c := catalogueBytes(t, newTestCatalogue(t, CatalogueConfig{Seed: 8, Items: 3000}))
	if !bytes.Equal(a, b) {
		t.Error("same seed gave different catalogues")
	}
	if bytes.Equal(a, c) {
		t.Error("different seeds gave the same catalogue")
	}
}

func TestNewCatalogueShape(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  CatalogueConfig
	}{
		{"default", CatalogueConfig{Seed: 1}},
		{"max", CatalogueConfig{Seed: 2, Items: MaxItems, Categories: 50}},
		{"small dim", CatalogueConfig{Seed: 3, Items: 5000, Categories: 20, Dim: 8, Creators: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := newTestCatalogue(t, tt.cfg)
			cfg := tt.cfg
			cfg.Start = testStart
			cfg = cfg.withDefaults()
			if c.Len() != cfg.Items || len(c.Categories) != cfg.Categories || c.Dim != cfg.Dim {
				t.Fatalf("got %d items, %d categories, dim %d; want %d, %d, %d",
					c.Len(), len(c.Categories), c.Dim, cfg.Items, cfg.Categories, cfg.Dim)
			}
			end := cfg.Start.Add(cfg.Window)
			sizes := make([]int, len(c.Categories))
			perCreator := make([]int, c.Creators)
			var flagged, promoted, fresh, back int
			var ownCos, otherCos float64
			for i := range c.Items {
				it := &c.Items[i]
				if j, ok := c.Lookup(it.ID); !ok || j != i {
					t.Fatalf("Lookup(%q) = %d, %v", it.ID, j, ok)
				}
				if n := norm(it.Latent); math.Abs(n-1) > 1e-4 {
					t.Fatalf("item %s latent norm %g", it.ID, n)
				}
				if it.Quality < 0 || it.Quality > 1 || it.Duration < 10 || it.Price < 0.99 {
					t.Fatalf("item %s: quality %g duration %g price %g out of range", it.ID, it.Quality, it.Duration, it.Price)
				}
				if it.Published.Before(cfg.Start.AddDate(-1, 0, 0)) || it.Published.After(end) {
					t.Fatalf("item %s published %s outside [start-1y, end]", it.ID, it.Published)
				}
				if it.Published.Before(cfg.Start) {
					back++
				}
				if it.Published.After(end.Add(-24 * time.Hour)) {
					fresh++
				}
				cat := it.Category()
				sizes[cat]++
				perCreator[it.Creator]++
				ownCos += dot(it.Latent, c.Categories[cat].Centroid)
				otherCos += dot(it.Latent, c.Categories[(int(cat)+1)%len(c.Categories)].Centroid)
				if it.Flagged {
					flagged++
				}
				if it.Promoted {
					promoted++
				}
			}
			n := float64(c.Len())
			if ownCos/n < 0.6 || math.Abs(otherCos/n) > 0.2 {
				t.Errorf("mean cosine to own centroid %.2f (want > 0.6), to another %.2f (want ~0)", ownCos/n, otherCos/n)
			}
			slices.Sort(sizes)
			if big, median := sizes[len(sizes)-1], sizes[len(sizes)/2]; big < 3*median {
				t.Errorf("category sizes not skewed: largest %d, median %d", big, median)
			}
			slices.Sort(perCreator)
			top := 0
			for _, k := range perCreator[len(perCreator)-max(1, len(perCreator)/100):] {
				top += k
			}
			if float64(top) < 0.1*n {
				t.Errorf("top 1%% of creators made %d of %d items, want a power law (>10%%)", top, c.Len())
			}
			within := func(name string, got int, want, tol float64) {
				if math.Abs(float64(got)/n-want) > tol {
					t.Errorf("%s share %.3f, want %.3f±%.3f", name, float64(got)/n, want, tol)
				}
			}
			within("flagged", flagged, 0.01, 0.01)
			within("promoted", promoted, 0.02, 0.01)
			within("back catalogue", back, 0.4, 0.05)
			// Fresh: the explicit share plus the window's uniform spread.
			within("published in the last day", fresh, 0.02+0.58/30, 0.015)
		})
	}
}

func norm(v []float32) float64 { return math.Sqrt(dot(v, v)) }

func TestCatalogueConfigValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		cfg  CatalogueConfig
		want string
	}{
		{"too many items", CatalogueConfig{Start: testStart, Items: MaxItems + 1}, "catalogue items: 200001"},
		{"negative items", CatalogueConfig{Start: testStart, Items: -1}, "catalogue items: -1"},
		{"one category", CatalogueConfig{Start: testStart, Categories: 1}, "catalogue categories: 1"},
		{"dim too big", CatalogueConfig{Start: testStart, Dim: MaxDim + 1}, "catalogue dim: 65"},
		{"no start", CatalogueConfig{}, "catalogue start: required"},
		{"short window", CatalogueConfig{Start: testStart, Window: time.Minute}, "catalogue window"},
		{"shares", CatalogueConfig{Start: testStart, BackCatalogueShare: 0.9, FreshShare: 0.2}, "back_catalogue_share + fresh_share"},
		{"flagged", CatalogueConfig{Start: testStart, FlaggedShare: 2}, "catalogue flagged_share: 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.cfg.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
			if _, err := NewCatalogue(tt.cfg); err == nil {
				t.Fatal("NewCatalogue accepted an invalid configuration")
			}
		})
	}
	if err := (CatalogueConfig{Start: testStart, FlaggedShare: -1}).Validate(); err != nil {
		t.Errorf("negative share (none) rejected: %v", err)
	}
}

func TestCatalogueRoundTrip(t *testing.T) {
	t.Parallel()
	generated := newTestCatalogue(t, CatalogueConfig{Seed: 5, Items: 4000})
	// A catalogue without latents, creators or some publish times, like
	// the MovieLens one.
	plain := &Catalogue{
		Categories: []Category{{Name: "Drama", PeakHour: 21}, {Name: "Comédie", PeakHour: 20.5}},
		Items: []Item{
			{ID: "m1", Title: "Misérables, Les (1995)", Categories: []int32{1, 0}, Creator: -1,
				Published: time.Date(1995, 1, 1, 0, 0, 0, 0, time.UTC), Quality: 0.7},
			{ID: "m2", Title: "", Categories: []int32{0}, Creator: -1, Flagged: true, Promoted: true},
		},
	}
	if err := plain.index(); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Catalogue{"generated": generated, "plain": plain} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			data := catalogueBytes(t, c)
			got, err := ReadCatalogue(bytes.NewReader(data))
			if err != nil {
				t.Fatalf("ReadCatalogue: %v", err)
			}
			if got.Dim != c.Dim || got.Creators != c.Creators || !reflect.DeepEqual(got.Categories, c.Categories) {
				t.Fatalf("header differs: dim %d/%d creators %d/%d", got.Dim, c.Dim, got.Creators, c.Creators)
			}
			if !reflect.DeepEqual(got.Items, c.Items) {
				for i := range c.Items {
					if !reflect.DeepEqual(got.Items[i], c.Items[i]) {
						t.Fatalf("item %d differs:\n got %+v\nwant %+v", i, got.Items[i], c.Items[i])
					}
				}
				t.Fatal("items differ")
			}
			if !reflect.DeepEqual(got.fame, c.fame) || !reflect.DeepEqual(got.byCategory, c.byCategory) {
				t.Error("indexes rebuilt differently")
			}
			if again := catalogueBytes(t, got); !bytes.Equal(again, data) {
				t.Error("re-encoding the decoded catalogue changed the bytes")
			}
		})
	}
}

func TestReadCatalogueCorrupt(t *testing.T) {
	t.Parallel()
	data := catalogueBytes(t, newTestCatalogue(t, CatalogueConfig{Seed: 9, Items: 200}))
	flip := func(i int) []byte {
		b := slices.Clone(data)
		b[i] ^= 0x40
		return b
	}
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "magic"},
		{"not a catalogue", []byte("hello world, this is not it"), "not an adaptrec catalogue"},
		{"future version", append([]byte(catalogueMagic), 9), "version 9 is not supported"},
		{"truncated", data[:len(data)/2], "unexpected EOF"},
		{"no checksum", data[:len(data)-4], "checksum"},
		{"flipped byte", flip(len(data) - 100), "crc32"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := ReadCatalogue(bytes.NewReader(tt.in))
			if !errors.Is(err, ErrCorruptCatalogue) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadCatalogue = %v, want ErrCorruptCatalogue containing %q", err, tt.want)
			}
		})
	}
}
