package serving

import (
	"fmt"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/predictions"
	"github.com/adaptrec/adaptrec/serving/catalog"
)

func TestBatchItemsFiltersSeenFlaggedAndRemoved(t *testing.T) {
	t.Parallel()
	ids := []string{"a", "b", "c", "d", "e"}
	n := len(ids)
	cat, err := catalog.New(ids, catalog.Columns{
		Category: make([]int32, n), Creator: make([]int32, n), AgeHours: make([]float32, n),
		Flagged: []bool{false, true, false, false, false}, Promoted: make([]bool, n),
		Popularity: make([]float32, n), Trending: make([]float32, n),
	}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	var list []predictions.Entry
	for i, id := range []string{"a", "b", "gone", "c", "d", "e"} {
		list = append(list, predictions.Entry{ItemID: id, Score: 1 - float32(i)/10})
	}
	ids2 := func(es []predictions.Entry) string {
		var s []string
		for _, e := range es {
			s = append(s, e.ItemID)
		}
		return fmt.Sprint(s)
	}
	tests := []struct {
		name    string
		n       int
		exclude map[string]bool
		cat     *catalog.Catalog
		want    string
	}{
		{"no catalogue: only the seen filter", 10, map[string]bool{"c": true}, nil, "[a b gone d e]"},
		{"flagged and removed items dropped", 10, nil, cat, "[a c d e]"},
		{"seen, flagged and removed, first n", 2, map[string]bool{"a": true}, cat, "[c d]"},
		{"everything filtered", 3, map[string]bool{"a": true, "c": true, "d": true, "e": true}, cat, "[]"},
	}
	for _, tt := range tests {
		if got := ids2(batchItems(list, tt.n, tt.exclude, tt.cat)); got != tt.want {
			t.Errorf("%s: got %s, want %s", tt.name, got, tt.want)
		}
	}
}
