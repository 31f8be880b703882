package sim

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

var testStart = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

func testWorld(tb testing.TB, seed uint64, items, users int) *World {
	tb.Helper()
	w, err := NewWorld(WorldConfig{
		Seed: seed, Start: testStart, Window: 30 * 24 * time.Hour,
		Catalogue:  CatalogueConfig{Items: items},
		Population: PopulationConfig{Users: users},
	})
	if err != nil {
		tb.Fatalf("NewWorld: %v", err)
	}
	return w
}

// worldWith builds a world over the test window.
func worldWith(tb testing.TB, cfg WorldConfig) *World {
	tb.Helper()
	cfg.Start, cfg.Window = testStart, 30*24*time.Hour
	w, err := NewWorld(cfg)
	if err != nil {
		tb.Fatalf("NewWorld: %v", err)
	}
	return w
}

// roundTrip writes a catalogue and reads it back.
func roundTrip(t *testing.T, c *Catalogue) *Catalogue {
	t.Helper()
	var buf bytes.Buffer
	if _, err := c.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := ReadCatalogue(&buf)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// collect generates a log and returns its events and the batch sizes.
func collect(t *testing.T, w *World, cfg HistoryConfig) ([]*adaptrecv1.Event, []int, HistoryStats) {
	t.Helper()
	var all []*adaptrecv1.Event
	var sizes []int
	st, err := GenerateHistory(t.Context(), w, cfg, func(_ context.Context, b []*adaptrecv1.Event) error {
		all = append(all, b...)
		sizes = append(sizes, len(b))
		return nil
	})
	if err != nil {
		t.Fatalf("GenerateHistory: %v", err)
	}
	return all, sizes, st
}

func logDigest(t *testing.T, evs []*adaptrecv1.Event) [32]byte {
	t.Helper()
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, e := range evs {
		b, err := opts.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

var eventIDPattern = regexp.MustCompile(`^[0-9a-f]{32}$`)

func TestGenerateHistoryLog(t *testing.T) {
	t.Parallel()
	w := testWorld(t, 21, 5000, 2000)
	const n = 120_000
	cfg := HistoryConfig{Events: n, BatchSize: 7000}
	evs, sizes, st := collect(t, w, cfg)
	if len(evs) != n || st.Events != n {
		t.Fatalf("got %d events (stats %d), want %d", len(evs), st.Events, n)
	}
	for i, s := range sizes {
		if s > cfg.BatchSize || s == 0 {
			t.Fatalf("batch %d has %d events, want 1..%d", i, s, cfg.BatchSize)
		}
	}
	validAt := w.End().Add(time.Hour)
	type slot struct {
		session, item string
		pos           int32
	}
	impressions := map[slot]bool{}
	sessionUser := map[string]string{}
	ids := map[string]bool{}
	byAction := map[adaptrecv1.Action]int64{}
	users := map[string]bool{}
	var prevTime time.Time
	prevID := ""
	for i, e := range evs {
		if err := events.Validate(e, validAt); err != nil {
			t.Fatalf("event %d invalid: %v", i, err)
		}
		env, in := e.GetEnvelope(), e.GetInteraction()
		at := env.GetEventTime().AsTime()
		if at.Before(prevTime) {
			t.Fatalf("event %d at %s is before the previous one at %s", i, at, prevTime)
		}
		prevTime = at
		id := env.GetEventId()
		if !eventIDPattern.MatchString(id) || ids[id] || id <= prevID {
			t.Fatalf("event %d id %q: want unique increasing 32 hex digits (previous %q)", i, id, prevID)
		}
		ids[id], prevID = true, id
		if env.GetProducer() != DefaultHistoryProducer {
			t.Fatalf("producer %q", env.GetProducer())
		}
		if at.Before(w.Start) || at.After(w.End().Add(6*time.Hour)) {
			t.Fatalf("event %d at %s outside the window", i, at)
		}
		byAction[in.GetAction()]++
		users[in.GetUserId()] = true
		if u, ok := sessionUser[in.GetSessionId()]; ok && u != in.GetUserId() {
			t.Fatalf("session %s has users %s and %s", in.GetSessionId(), u, in.GetUserId())
		}
		sessionUser[in.GetSessionId()] = in.GetUserId()
		if in.GetDevice() == adaptrecv1.Device_DEVICE_UNSPECIFIED {
			t.Fatalf("event %d has no device", i)
		}
		idx, ok := w.Catalogue.Lookup(in.GetItemId())
		if !ok {
			t.Fatalf("event %d: unknown item %s", i, in.GetItemId())
		}
		it := &w.Catalogue.Items[idx]
		if at.Before(it.Published) {
			t.Fatalf("event %d: item %s used at %s before its publication at %s", i, it.ID, at, it.Published)
		}
		if _, ok := w.Users.Lookup(in.GetUserId()); !ok {
			t.Fatalf("event %d: unknown user %s", i, in.GetUserId())
		}
		browse := in.GetSurface() == BrowseSurface
		if browse != (in.GetPosition() == -1) || (!browse && in.GetSurface() != HistorySurface) {
			t.Fatalf("event %d: surface %q with position %d", i, in.GetSurface(), in.GetPosition())
		}
		if !browse && (in.GetPosition() < 0 || in.GetPosition() >= DefaultPageSize) {
			t.Fatalf("event %d: position %d", i, in.GetPosition())
		}
		s := slot{in.GetSessionId(), in.GetItemId(), in.GetPosition()}
		switch in.GetAction() {
		case adaptrecv1.Action_ACTION_IMPRESSION:
			impressions[s] = true
		case adaptrecv1.Action_ACTION_VIEW:
			if !browse {
				t.Fatalf("event %d: VIEW on surface %q", i, in.GetSurface())
			}
		case adaptrecv1.Action_ACTION_CLICK, adaptrecv1.Action_ACTION_SKIP:
			if !impressions[s] {
				t.Fatalf("event %d: %s without an earlier impression of %s at %d in session %s",
					i, in.GetAction(), s.item, s.pos, s.session)
			}
		case adaptrecv1.Action_ACTION_WATCH:
			if v := in.GetValue(); v <= 0 || v > float64(it.Duration) {
				t.Fatalf("event %d: watched %g s of a %g s item", i, v, it.Duration)
			}
		case adaptrecv1.Action_ACTION_COMPLETE:
			if in.GetValue() != float64(it.Duration) {
				t.Fatalf("event %d: completed with value %g, want duration %g", i, in.GetValue(), it.Duration)
			}
		case adaptrecv1.Action_ACTION_PURCHASE:
			if in.GetValue() != float64(it.Price) {
				t.Fatalf("event %d: purchase value %g, want price %g", i, in.GetValue(), it.Price)
			}
		default:
			t.Fatalf("event %d: unexpected action %s", i, in.GetAction())
		}
	}
	for a, c := range byAction {
		if st.ByAction[a] != c {
			t.Errorf("stats %s = %d, counted %d", a, st.ByAction[a], c)
		}
	}
	if st.Users != len(users) || st.Sessions != int64(len(sessionUser)) {
		t.Errorf("stats users %d sessions %d, counted %d and %d", st.Users, st.Sessions, len(users), len(sessionUser))
	}
	if !st.First.Equal(evs[0].GetEnvelope().GetEventTime().AsTime()) || !st.Last.Equal(prevTime) {
		t.Errorf("stats first/last %s/%s", st.First, st.Last)
	}
	// The window is covered: the last day has events.
	if st.Last.Before(w.End().Add(-24 * time.Hour)) {
		t.Errorf("log ends at %s, window ends at %s", st.Last, w.End())
	}
	ctr := float64(byAction[adaptrecv1.Action_ACTION_CLICK]) / float64(byAction[adaptrecv1.Action_ACTION_IMPRESSION])
	if ctr < 0.02 || ctr > 0.2 {
		t.Errorf("organic CTR %.3f, want a plausible 2%%..20%%", ctr)
	}
	for _, a := range []adaptrecv1.Action{adaptrecv1.Action_ACTION_VIEW, adaptrecv1.Action_ACTION_WATCH,
		adaptrecv1.Action_ACTION_COMPLETE, adaptrecv1.Action_ACTION_PURCHASE, adaptrecv1.Action_ACTION_SKIP} {
		if byAction[a] == 0 {
			t.Errorf("no %s events", a)
		}
	}
}

func TestGenerateHistoryDeterministic(t *testing.T) {
	t.Parallel()
	w := testWorld(t, 22, 3000, 1000)
	base := HistoryConfig{Events: 50_000, Workers: 1}
	want, _, st := collect(t, w, base)
	digest := logDigest(t, want)
	tests := []struct {
		name string
		w    *World
		cfg  HistoryConfig
		same bool
	}{
		{"same config", w, base, true},
		{"three workers", w, HistoryConfig{Events: 50_000, Workers: 3}, true},
		{"other batch size", w, HistoryConfig{Events: 50_000, Workers: 2, BatchSize: 999}, true},
		{"same world rebuilt", testWorld(t, 22, 3000, 1000), base, true},
		{"catalogue read back from its file", worldWith(t, WorldConfig{Seed: 22, Prebuilt: roundTrip(t, w.Catalogue),
			Population: PopulationConfig{Users: 1000}}), base, true},
		{"other seed", testWorld(t, 23, 3000, 1000), base, false},
		{"other size", w, HistoryConfig{Events: 50_001, Workers: 1}, false},
		{"other categories", worldWith(t, WorldConfig{Seed: 22, Catalogue: CatalogueConfig{Items: 3000, Categories: 31},
			Population: PopulationConfig{Users: 1000}}), base, false},
		{"with a shift", worldWith(t, WorldConfig{Seed: 22, Catalogue: CatalogueConfig{Items: 3000},
			Population: PopulationConfig{Users: 1000, Shift: Shift{At: testStart.AddDate(0, 0, 20)}}}), base, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, gst := collect(t, tt.w, tt.cfg)
			if same := logDigest(t, got) == digest; same != tt.same {
				t.Fatalf("log identical to the base run: %v, want %v", same, tt.same)
			}
			if !tt.same && gst.RunKey == st.RunKey {
				t.Errorf("different logs share run key %x: their event ids could collide", st.RunKey)
			}
		})
	}
}

// TestHistoryEventMatchesEventsPackage checks that the allocation-saving
// event construction builds exactly what events.NewInteraction builds.
func TestHistoryEventMatchesEventsPackage(t *testing.T) {
	t.Parallel()
	w := testWorld(t, 24, 1000, 200)
	evs, _, _ := collect(t, w, HistoryConfig{Events: 500})
	for _, e := range evs[:50] {
		env := e.GetEnvelope()
		in := proto.Clone(e.GetInteraction()).(*adaptrecv1.UserInteractionEvent)
		want := events.NewInteraction(env.GetEventId(), env.GetEventTime().AsTime(), env.GetProducer(), in)
		if !proto.Equal(e, want) {
			t.Fatalf("history event differs from events.NewInteraction:\n got %v\nwant %v", e, want)
		}
	}
}

func TestGenerateHistoryDailyRhythm(t *testing.T) {
	t.Parallel()
	w := testWorld(t, 25, 3000, 3000)
	evs, _, _ := collect(t, w, HistoryConfig{Events: 150_000})
	var byHour [24]int
	seen := map[string]bool{}
	for _, e := range evs {
		in := e.GetInteraction()
		if seen[in.GetSessionId()] {
			continue
		}
		seen[in.GetSessionId()] = true
		u, _ := w.Users.Lookup(in.GetUserId())
		byHour[int(w.Users.Users[u].LocalHour(e.GetEnvelope().GetEventTime().AsTime()))]++
	}
	evening := byHour[20] + byHour[21] + byHour[22]
	night := byHour[3] + byHour[4] + byHour[5]
	if evening < 4*night {
		t.Errorf("sessions starting 20-23h local: %d, 3-6h: %d; want a daily rhythm", evening, night)
	}
}

func TestGenerateHistoryStops(t *testing.T) {
	t.Parallel()
	w := testWorld(t, 26, 2000, 500)
	errFull := errors.New("disk full")
	t.Run("emit error", func(t *testing.T) {
		t.Parallel()
		calls := 0
		st, err := GenerateHistory(t.Context(), w, HistoryConfig{Events: 100_000, BatchSize: 1000},
			func(context.Context, []*adaptrecv1.Event) error {
				calls++
				if calls == 3 {
					return errFull
				}
				return nil
			})
		if !errors.Is(err, errFull) || calls != 3 {
			t.Fatalf("err = %v after %d calls, want disk full after 3", err, calls)
		}
		if st.Events != 2000 {
			t.Errorf("stats count %d events emitted, want the 2000 of the accepted batches", st.Events)
		}
	})
	t.Run("cancel", func(t *testing.T) {
		t.Parallel()
		ctx, cancel := context.WithCancel(t.Context())
		calls := 0
		_, err := GenerateHistory(ctx, w, HistoryConfig{Events: 1_000_000, BatchSize: 1000},
			func(context.Context, []*adaptrecv1.Event) error {
				calls++
				if calls == 2 {
					cancel()
				}
				return nil
			})
		if !errors.Is(err, context.Canceled) || calls > 2 {
			t.Fatalf("err = %v after %d calls, want context.Canceled soon after cancelling", err, calls)
		}
	})
	t.Run("progress", func(t *testing.T) {
		t.Parallel()
		var got []Progress
		_, err := GenerateHistory(t.Context(), w, HistoryConfig{Events: 30_000, BatchSize: 1000,
			ProgressInterval: time.Nanosecond, OnProgress: func(p Progress) { got = append(got, p) }},
			func(context.Context, []*adaptrecv1.Event) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		if len(got) < 2 || got[len(got)-1].Events != 30_000 {
			t.Fatalf("progress reports %+v, want several ending at 30000", got)
		}
		for i := 1; i < len(got); i++ {
			if got[i].Events < got[i-1].Events || got[i].EventsPerSecond <= 0 {
				t.Fatalf("progress %d: %+v after %+v", i, got[i], got[i-1])
			}
		}
	})
}

func TestHistoryConfigValidate(t *testing.T) {
	t.Parallel()
	w := testWorld(t, 27, 500, 100)
	tests := []struct {
		name string
		cfg  HistoryConfig
		want string
	}{
		{"no events", HistoryConfig{}, "history events: 0"},
		{"page too big", HistoryConfig{Events: 10, PageSize: 101}, "history page size: 101"},
		{"pages", HistoryConfig{Events: 10, PagesPerSession: 0.5}, "pages per session: 0.5"},
		{"browse", HistoryConfig{Events: 10, BrowseRate: 2}, "browse rate: 2"},
		{"workers", HistoryConfig{Events: 10, Workers: -1}, "history workers: must be >= 1, got -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := GenerateHistory(t.Context(), w, tt.cfg, func(context.Context, []*adaptrecv1.Event) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("GenerateHistory = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestGenerateHistoryNothingPublished(t *testing.T) {
	t.Parallel()
	w := testWorld(t, 28, 500, 100)
	_, err := GenerateHistory(t.Context(), w, HistoryConfig{Events: 100, Start: w.Start.AddDate(-5, 0, 0), Window: time.Hour},
		func(context.Context, []*adaptrecv1.Event) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "no items are published") {
		t.Fatalf("GenerateHistory = %v, want a no-items error", err)
	}
}

// BenchmarkGenerateHistory measures generation alone (emit discards).
func BenchmarkGenerateHistory(b *testing.B) {
	w := testWorld(b, 1, 20_000, 10_000)
	const n = 1_000_000
	b.ReportAllocs()
	for b.Loop() {
		st, err := GenerateHistory(b.Context(), w, HistoryConfig{Events: n}, func(context.Context, []*adaptrecv1.Event) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		if st.Events != n {
			b.Fatalf("events = %d", st.Events)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkGenerateHistoryMarshal adds protobuf encoding, the cost a
// publisher pays per event, to see what generation leaves for publishing.
func BenchmarkGenerateHistoryMarshal(b *testing.B) {
	w := testWorld(b, 1, 20_000, 10_000)
	const n = 1_000_000
	b.ReportAllocs()
	for b.Loop() {
		_, err := GenerateHistory(b.Context(), w, HistoryConfig{Events: n}, func(_ context.Context, batch []*adaptrecv1.Event) error {
			for _, e := range batch {
				if _, err := proto.Marshal(e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
