package sim

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/testenv"
)

// loadML100K loads the shared MovieLens 100K copy (testenv.Dataset); its
// licence forbids copying it into the repository.
func loadML100K(t *testing.T) *MovieLens {
	t.Helper()
	m, err := LoadMovieLens(testenv.Dataset(t, "ml-100k", "u.data", "u.item"))
	if err != nil {
		t.Fatalf("LoadMovieLens: %v", err)
	}
	return m
}

func TestLoadMovieLens100K(t *testing.T) {
	t.Parallel()
	m := loadML100K(t)
	if len(m.Ratings) != 100_000 || m.Users != 943 || len(m.Movies) != 1682 {
		t.Fatalf("got %d ratings, %d users, %d movies; want 100000, 943, 1682", len(m.Ratings), m.Users, len(m.Movies))
	}
	if r := m.Ratings[0]; r != (Rating{User: 196, Item: 242, Value: 3, Time: 881250949}) {
		t.Errorf("first rating %+v", r)
	}
	toy := m.Movies[0]
	if toy.ID != 1 || toy.Title != "Toy Story (1995)" || !toy.Released.Equal(time.Date(1995, 1, 1, 0, 0, 0, 0, time.UTC)) ||
		!slices.Equal(toy.Genres, []int32{3, 4, 5}) {
		t.Errorf("movie 1 = %+v, want Toy Story (1995), 1995-01-01, Animation|Children's|Comedy", toy)
	}
	// u.item is Latin-1: titles come back as UTF-8.
	if got := m.Movies[542].Title; got != "Misérables, Les (1995)" {
		t.Errorf("movie 543 title %q", got)
	}
	if got := m.Movies[1372].Released; !got.Equal(time.Date(1971, 2, 4, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("movie 1373 released %s, want 1971-02-04 (the file writes 4-Feb-1971)", got)
	}
	if !m.Movies[266].Released.IsZero() {
		t.Errorf("movie 267 has no release date in the file, got %s", m.Movies[266].Released)
	}

	cat, err := m.Catalogue()
	if err != nil {
		t.Fatal(err)
	}
	if cat.Len() != 1682 || len(cat.Categories) != 19 || cat.Categories[15].Name != "Sci-Fi" {
		t.Fatalf("catalogue: %d items, %d categories", cat.Len(), len(cat.Categories))
	}
	i, ok := cat.Lookup(MovieLensItemID(1))
	if !ok || cat.Items[i].Title != "Toy Story (1995)" || cat.Items[i].Category() != 3 {
		t.Errorf("catalogue item ml-i1 = %+v", cat.Items[i])
	}
	for _, it := range cat.Items {
		if it.Quality < 0 || it.Quality > 1 || len(it.Categories) == 0 {
			t.Fatalf("item %s: quality %g, categories %v", it.ID, it.Quality, it.Categories)
		}
	}

	evs, err := m.Events("")
	if err != nil {
		t.Fatal(err)
	}
	again, err := m.Events("")
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 100_000 {
		t.Fatalf("%d events", len(evs))
	}
	ids := make(map[string]bool, len(evs))
	now := time.Now()
	var prev time.Time
	for i, e := range evs {
		if err := events.Validate(e, now); err != nil {
			t.Fatalf("event %d invalid: %v", i, err)
		}
		env, in := e.GetEnvelope(), e.GetInteraction()
		if env.GetEventId() != again[i].GetEnvelope().GetEventId() {
			t.Fatalf("event %d id not deterministic", i)
		}
		if ids[env.GetEventId()] || !eventIDPattern.MatchString(env.GetEventId()) {
			t.Fatalf("event %d id %q duplicate or malformed", i, env.GetEventId())
		}
		ids[env.GetEventId()] = true
		at := env.GetEventTime().AsTime()
		if at.Before(prev) {
			t.Fatalf("event %d out of time order", i)
		}
		prev = at
		if in.GetAction() != adaptrecv1.Action_ACTION_RATE || in.GetValue() < 1 || in.GetValue() > 5 ||
			!strings.HasPrefix(in.GetUserId(), "ml-u") || !strings.HasPrefix(in.GetItemId(), "ml-i") ||
			env.GetProducer() != DefaultMovieLensProducer {
			t.Fatalf("event %d: %v", i, e)
		}
		if _, ok := cat.Lookup(in.GetItemId()); !ok {
			t.Fatalf("event %d: item %s not in the catalogue", i, in.GetItemId())
		}
	}
	first := evs[0].GetEnvelope().GetEventTime().AsTime()
	if !first.Equal(time.Unix(874724710, 0)) {
		t.Errorf("first rating time %s, want the data set's earliest (874724710)", first)
	}
}

func TestReadMovieLensMalformed(t *testing.T) {
	t.Parallel()
	flags := strings.Repeat("|0", 19)
	tests := []struct {
		name  string
		file  string // "data" or "item"
		input string
		want  string
	}{
		{"fields", "data", "1\t2\t3\t4\n1\t2\t3\n", "u.data:2: 3 tab-separated fields, want 4"},
		{"rating not integer", "data", "1\t2\tx\t4\n", `u.data:1: rating "x" is not an integer`},
		{"rating range", "data", "1\t2\t3\t4\n\n1\t3\t6\t4\n", "u.data:3: rating 6 is not in 1..5"},
		{"user zero", "data", "0\t2\t3\t4\n", "u.data:1: user 0 out of range"},
		{"negative time", "data", "1\t2\t3\t-4\n", "u.data:1: time -4 is negative"},
		{"duplicate", "data", "1\t2\t3\t4\n1\t2\t5\t9\n", "u.data:2: user 1 already rated item 2 on line 1"},
		{"item fields", "item", "1|Toy Story (1995)|01-Jan-1995||url|0|1\n", "u.item:1: 7 |-separated fields, want 24"},
		{"item id", "item", "x|T|01-Jan-1995||url" + flags + "\n", `u.item:1: movie id "x" is not a positive integer`},
		{"date", "item", "1|T|1995-01-01||url" + flags + "\n", `u.item:1: release date "1995-01-01" is not like 01-Jan-1995`},
		{"flag", "item", "1|T|01-Jan-1995||url" + strings.Repeat("|0", 18) + "|2\n", `u.item:1: genre flag 19 (Western) is "2"`},
		{"duplicate movie", "item", "1|T|||url" + flags + "\n" + "1|T|||url" + flags + "\n", "u.item:2: movie id 1 already defined on line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var err error
			if tt.file == "data" {
				_, err = ReadMovieLensRatings(strings.NewReader(tt.input), "u.data")
			} else {
				_, err = ReadMovieLensMovies(strings.NewReader(tt.input), "u.item")
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLoadMovieLensUnknownItem(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	item := "1|One (1990)|01-Jan-1990||url" + strings.Repeat("|0", 18) + "|1\n"
	data := "1\t1\t4\t900000000\n2\t7\t3\t900000001\n"
	for name, body := range map[string]string{"u.item": item, "u.data": data} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	_, err := LoadMovieLens(dir)
	want := filepath.Join(dir, "u.data") + ":2: item 7 is not in u.item"
	if err == nil || err.Error() != want {
		t.Fatalf("LoadMovieLens = %v, want %q", err, want)
	}
	if _, err := LoadMovieLens(filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "u.item") {
		t.Fatalf("LoadMovieLens(missing dir) = %v, want an error naming u.item", err)
	}
}
