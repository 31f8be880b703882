package catalog_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/serving/catalog"
)

func TestNewIndexesItems(t *testing.T) {
	ids := []string{"a", "b", "c", "d"}
	c, err := catalog.New(ids, catalog.Columns{
		Category:   []int32{1, -1, 1, 0},
		Creator:    []int32{0, 0, 1, 2},
		AgeHours:   []float32{1, 2, 3, 4},
		Flagged:    []bool{false, true, false, false},
		Promoted:   make([]bool, 4),
		Popularity: []float32{5, 9, 7, 5},
		Trending:   []float32{1, 1, 3, 1},
	}, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if i, ok := c.Lookup("c"); !ok || i != 2 || c.ID(i) != "c" {
		t.Errorf("Lookup(c) = %d, %v", i, ok)
	}
	if _, ok := c.Lookup("zz"); ok {
		t.Error("Lookup of an unknown id succeeded")
	}
	if got, want := c.ByPopularity(), []int32{1, 2, 0, 3}; !slices.Equal(got, want) {
		t.Errorf("ByPopularity = %v, want %v (ties by index)", got, want)
	}
	if c.Categories() != 2 {
		t.Errorf("Categories = %d, want 2", c.Categories())
	}
	if got, want := c.InCategory(1), []int32{2, 0}; !slices.Equal(got, want) {
		t.Errorf("InCategory(1) = %v, want %v", got, want)
	}
	if c.InCategory(-1) != nil || c.InCategory(7) != nil {
		t.Error("InCategory out of range returned items")
	}
}

func TestNewRefusesBadColumns(t *testing.T) {
	cols := func(cat int32) catalog.Columns {
		return catalog.Columns{Category: []int32{cat}, Creator: []int32{0}, AgeHours: []float32{0},
			Flagged: []bool{false}, Promoted: []bool{false}, Popularity: []float32{0}, Trending: []float32{0}}
	}
	for _, tt := range []struct {
		ids  []string
		cols catalog.Columns
		want string
	}{
		{[]string{"a", "b"}, cols(0), "has 1 values for 2 items"},
		{[]string{"a"}, cols(catalog.MaxID), "has category"},
		{[]string{"a"}, cols(-2), "has category"},
	} {
		if _, err := catalog.New(tt.ids, tt.cols, time.Time{}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%v) error %v, want one containing %q", tt.ids, err, tt.want)
		}
	}
	c := cols(0)
	c.Category = []int32{0, 0}
	c.Creator, c.AgeHours = []int32{0, 0}, []float32{0, 0}
	c.Flagged, c.Promoted = []bool{false, false}, []bool{false, false}
	c.Popularity, c.Trending = []float32{0, 0}, []float32{0, 0}
	if _, err := catalog.New([]string{"a", "a"}, c, time.Time{}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate id: error %v", err)
	}
}

func TestTranslate(t *testing.T) {
	c, err := catalog.New([]string{"a", "b", "c"}, catalog.Columns{
		Category: []int32{0, 0, 0}, Creator: []int32{0, 0, 0}, AgeHours: make([]float32, 3),
		Flagged: make([]bool, 3), Promoted: make([]bool, 3), Popularity: make([]float32, 3), Trending: make([]float32, 3),
	}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	table := []string{"c", "zz", "a"}
	toCat, fromCat := c.Translate(len(table), func(i int32) string { return table[i] })
	if want := []int32{2, -1, 0}; !slices.Equal(toCat, want) {
		t.Errorf("toCat = %v, want %v", toCat, want)
	}
	if want := []int32{2, -1, 0}; !slices.Equal(fromCat, want) {
		t.Errorf("fromCat = %v, want %v (b is not in the table)", fromCat, want)
	}
}
