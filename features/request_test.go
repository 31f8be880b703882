package features_test

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/adaptrec/adaptrec/eventlog"
	"github.com/adaptrec/adaptrec/events"
	"github.com/adaptrec/adaptrec/features"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// requestFacts is what happened at one request, independent of how serving
// or the archive record it.
type requestFacts struct {
	name    string
	at      time.Time
	zone    string
	device  adaptrecv1.Device
	surface string
	session string
	user    features.UserState
	// serverClock: the client sent no local_time, so serving uses its own
	// clock (which reads at).
	serverClock bool

	// Expected values of the request features.
	hour, dow, weekend int64
	sessionLen         float32
	interactions       int64
	sinceLast          float32
	device4, surface2  []float32
}

// at parses an RFC 3339 time with nanoseconds, which serving sees and the
// archive truncates to milliseconds.
func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

var (
	noDevice  = []float32{0, 0, 0, 0}
	tv        = []float32{0, 0, 0, 1}
	mobile    = []float32{1, 0, 0, 0}
	home      = []float32{1, 0}
	noSurface = []float32{0, 0}
	// unknown stands for the defaults of the time features.
	unknown = struct{ hour, dow, weekend int64 }{-1, -1, 0}
)

func requestCases() []requestFacts {
	s1 := features.SessionKey("s1")
	const capSince = float32(30 * 24 * 3600)
	return []requestFacts{
		{name: "Paris, the last minutes of winter time", at: at("2026-03-29T00:30:00.123456789Z"), zone: "Europe/Paris",
			device: adaptrecv1.Device_DEVICE_TV, surface: "home",
			hour: 1, dow: 6, weekend: 1, sinceLast: capSince, device4: tv, surface2: home},
		{name: "Paris, one hour later in summer time", at: at("2026-03-29T01:30:00Z"), zone: "Europe/Paris",
			device: adaptrecv1.Device_DEVICE_TV, surface: "home",
			hour: 3, dow: 6, weekend: 1, sinceLast: capSince, device4: tv, surface2: home},
		{name: "New York, 01:30 daylight time", at: at("2026-11-01T05:30:00Z"), zone: "America/New_York",
			device: adaptrecv1.Device_DEVICE_MOBILE, surface: "home",
			hour: 1, dow: 6, weekend: 1, sinceLast: capSince, device4: mobile, surface2: home},
		{name: "New York, 01:30 again in standard time", at: at("2026-11-01T06:30:00Z"), zone: "America/New_York",
			device: adaptrecv1.Device_DEVICE_MOBILE, surface: "home",
			hour: 1, dow: 6, weekend: 1, sinceLast: capSince, device4: mobile, surface2: home},
		{name: "Kolkata's half-hour offset crosses midnight", at: at("2026-11-23T18:45:00.999Z"), zone: "Asia/Kolkata",
			device: adaptrecv1.Device_DEVICE_MOBILE, surface: "item_page",
			hour: 0, dow: 1, weekend: 0, sinceLast: capSince, device4: mobile, surface2: []float32{0, 1}},
		{name: "no time zone", at: at("2026-11-23T12:00:00Z"), device: adaptrecv1.Device_DEVICE_TV, surface: "home",
			hour: unknown.hour, dow: unknown.dow, weekend: unknown.weekend, sinceLast: capSince, device4: tv, surface2: home},
		{name: "not an IANA zone", at: at("2026-11-23T12:00:00Z"), zone: "Mars/Olympus_Mons", surface: "home",
			hour: unknown.hour, dow: unknown.dow, weekend: unknown.weekend, sinceLast: capSince, device4: noDevice, surface2: home},
		{name: "the server's own zone is refused", at: at("2026-11-23T12:00:00Z"), zone: "Local", surface: "home",
			hour: unknown.hour, dow: unknown.dow, weekend: unknown.weekend, sinceLast: capSince, device4: noDevice, surface2: home},
		{name: "no device, unknown surface", at: at("2026-11-24T12:00:00Z"), zone: "UTC", surface: "search",
			hour: 12, dow: 1, weekend: 0, sinceLast: capSince, device4: noDevice, surface2: noSurface},
		{name: "a session under way", at: at("2026-11-24T12:00:00.5009Z"), zone: "Europe/London", session: "s1",
			device: adaptrecv1.Device_DEVICE_MOBILE, surface: "home",
			user: features.UserState{SessionKey: s1, SessionStart: at("2026-11-24T11:50:00Z"), SessionInteractions: 4,
				LastInteraction: at("2026-11-24T11:58:30Z")},
			hour: 12, dow: 1, sessionLen: 600.5, interactions: 4, sinceLast: 90.5, device4: mobile, surface2: home},
		{name: "a new session", at: at("2026-11-24T12:00:00Z"), zone: "Europe/London", session: "s2",
			user: features.UserState{SessionKey: s1, SessionStart: at("2026-11-24T11:50:00Z"), SessionInteractions: 4,
				LastInteraction: at("2026-11-24T11:58:30Z")},
			hour: 12, dow: 1, sinceLast: 90, device4: noDevice, surface2: noSurface},
		{name: "no session id", at: at("2026-11-24T12:00:00Z"), zone: "Europe/London",
			user: features.UserState{SessionKey: s1, SessionStart: at("2026-11-24T11:50:00Z"), SessionInteractions: 4},
			hour: 12, dow: 1, sinceLast: capSince, device4: noDevice, surface2: noSurface},
		{name: "caps: a day-long session, a month away", at: at("2026-11-24T12:00:00Z"), zone: "Europe/London", session: "s1",
			user: features.UserState{SessionKey: s1, SessionStart: at("2026-11-23T06:00:00Z"), SessionInteractions: 900,
				LastInteraction: at("2026-10-01T00:00:00Z")},
			hour: 12, dow: 1, sessionLen: 24 * 3600, interactions: 900, sinceLast: capSince, device4: noDevice, surface2: noSurface},
		{name: "clock skew: the last interaction after the request", at: at("2026-11-24T12:00:00Z"), zone: "Europe/London", session: "s1",
			user: features.UserState{SessionKey: s1, SessionStart: at("2026-11-24T12:00:05Z"), SessionInteractions: 1,
				LastInteraction: at("2026-11-24T12:00:05Z")},
			hour: 12, dow: 1, sessionLen: 0, interactions: 1, sinceLast: 0, device4: noDevice, surface2: noSurface},
		{name: "no local_time from the client", at: at("2026-11-24T12:00:00.25Z"), zone: "Asia/Tokyo", serverClock: true,
			device: adaptrecv1.Device_DEVICE_TV, surface: "home",
			hour: 21, dow: 1, sinceLast: capSince, device4: tv, surface2: home},
	}
}

// servingContext is what RecommendService would build for the request.
func servingContext(f requestFacts) features.RequestContext {
	req := &adaptrecv1.RecommendRequest{
		RequestId: "r1", UserId: "u1", Surface: f.surface,
		Context: &adaptrecv1.RequestContext{Device: f.device, TimeZone: f.zone, SessionId: f.session},
	}
	serverNow := f.at
	if !f.serverClock {
		req.Context.LocalTime = timestamppb.New(f.at)
		serverNow = f.at.Add(3 * time.Second) // the server's clock is not the client's
	}
	return features.RequestFromRecommend(req, serverNow, f.user)
}

// trainingContext archives the impression the request produced, as the
// archiver does (eventlog.NewRow, Parquet with millisecond times), reads it
// back and builds the training side's context from the row.
func trainingContext(t *testing.T, f requestFacts) features.RequestContext {
	t.Helper()
	e := events.NewInteraction(events.NewID(), f.at, "test", &adaptrecv1.UserInteractionEvent{
		UserId: "u1", ItemId: "i1", Action: adaptrecv1.Action_ACTION_IMPRESSION,
		SessionId: f.session, Surface: f.surface, Device: f.device, RequestId: "r1",
	})
	payload, err := proto.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var enc eventlog.Encoder
	b, err := enc.Encode([]eventlog.Row{eventlog.NewRow(e, payload, eventlog.Provenance{Topic: events.TopicInteractions})})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := parquet.Read[eventlog.Row](bytes.NewReader(b), int64(len(b)))
	if err != nil || len(rows) != 1 {
		t.Fatalf("read archived row back: %d rows, %v", len(rows), err)
	}
	r := rows[0]
	return features.RequestFromEvent(features.ArchivedEvent{
		EventTime: r.EventTime, Device: r.Device, SessionID: r.SessionID, Surface: r.Surface,
	}, f.zone, f.user)
}

func loadProject(t testing.TB) *features.FeatureSet {
	t.Helper()
	s, err := features.Load("features.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestRequestLaneServingAndTrainingAgree(t *testing.T) {
	t.Parallel()
	s := loadProject(t)
	var names []string
	for _, f := range s.Entity(features.EntityRequest) {
		names = append(names, f.Name)
	}
	l, err := s.NewLayout(names)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range requestCases() {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			rows := make([][]float32, 2)
			recs := make([]*features.Record, 2)
			for i, rc := range []features.RequestContext{servingContext(f), trainingContext(t, f)} {
				recs[i] = s.NewRecord(features.EntityRequest)
				if err := s.FillRequest(recs[i], rc); err != nil {
					t.Fatal(err)
				}
				rows[i] = make([]float32, l.Width())
				if err := l.Fill(rows[i], features.Inputs{Request: recs[i]}); err != nil {
					t.Fatal(err)
				}
			}
			if !slices.Equal(rows[0], rows[1]) {
				t.Fatalf("serving row %v\ntraining row %v\ncolumns %v", rows[0], rows[1], l.Names())
			}
			want := map[string]any{
				"req_local_hour":               f.hour,
				"req_day_of_week":              f.dow,
				"req_is_weekend":               f.weekend,
				"req_session_length_s":         f.sessionLen,
				"req_session_interactions":     f.interactions,
				"req_since_last_interaction_s": f.sinceLast,
				"req_device":                   f.device4,
				"req_surface":                  f.surface2,
			}
			for name, w := range want {
				feat, _ := s.Lookup(name)
				v, _, err := recs[0].Get(feat.ID)
				if err != nil {
					t.Fatal(err)
				}
				var got any
				switch feat.Type.Kind {
				case features.KindInt:
					got = v.Int
				case features.KindFloat:
					got = v.Float
				case features.KindVector:
					got = fmt.Sprint(v.Vector)
					w = fmt.Sprint(w)
				}
				if got != w {
					t.Errorf("%s = %v, want %v", name, got, w)
				}
			}
			// sin² + cos² = 1 when the hour is known, both 0 when not.
			sin, _ := s.Lookup("req_hour_sin")
			cos, _ := s.Lookup("req_hour_cos")
			vs, _, _ := recs[0].Get(sin.ID)
			vc, _, _ := recs[0].Get(cos.ID)
			norm := float64(vs.Float)*float64(vs.Float) + float64(vc.Float)*float64(vc.Float)
			if (f.hour >= 0 && math.Abs(norm-1) > 1e-6) || (f.hour < 0 && norm != 0) {
				t.Errorf("hour sin %v cos %v for hour %d", vs.Float, vc.Float, f.hour)
			}
		})
	}
}

func TestHourEncoding(t *testing.T) {
	t.Parallel()
	s := loadProject(t)
	sin, _ := s.Lookup("req_hour_sin")
	cos, _ := s.Lookup("req_hour_cos")
	tests := []struct {
		at       string
		sin, cos float64
	}{
		{"2026-11-24T00:00:00Z", 0, 1},
		{"2026-11-24T06:00:00Z", 1, 0},
		{"2026-11-24T12:00:00Z", 0, -1},
		{"2026-11-24T18:00:00Z", -1, 0},
		{"2026-11-24T03:00:00Z", math.Sqrt2 / 2, math.Sqrt2 / 2},
		{"2026-11-24T23:59:59.999Z", -2 * math.Pi / 24 / 3600 * 0.001, 1},
	}
	for _, tt := range tests {
		rec := s.NewRecord(features.EntityRequest)
		if err := s.FillRequest(rec, features.RequestContext{Time: at(tt.at), TimeZone: "UTC"}); err != nil {
			t.Fatal(err)
		}
		vs, _, _ := rec.Get(sin.ID)
		vc, _, _ := rec.Get(cos.ID)
		if math.Abs(float64(vs.Float)-tt.sin) > 1e-4 || math.Abs(float64(vc.Float)-tt.cos) > 1e-4 {
			t.Errorf("%s: sin %v cos %v, want %v %v", tt.at, vs.Float, vc.Float, tt.sin, tt.cos)
		}
	}
}

func TestFillRequestDefaultsWhenNothingIsKnown(t *testing.T) {
	t.Parallel()
	s := loadProject(t)
	rec := s.NewRecord(features.EntityRequest)
	// A previous request's values must not leak into the next one.
	full := requestCases()[9]
	if err := s.FillRequest(rec, servingContext(full)); err != nil {
		t.Fatal(err)
	}
	if err := s.FillRequest(rec, features.RequestContext{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range s.Entity(features.EntityRequest) {
		if rec.Has(f.ID) {
			v, _, _ := rec.Get(f.ID)
			t.Errorf("%s = %+v with nothing known, want unset (default)", f.Name, v)
		}
	}
}

func TestFillRequestRefusesOtherRecords(t *testing.T) {
	t.Parallel()
	s := loadProject(t)
	other := loadProject(t)
	for _, rec := range []*features.Record{s.NewRecord(features.EntityUser), other.NewRecord(features.EntityRequest)} {
		if err := s.FillRequest(rec, features.RequestContext{}); err == nil {
			t.Errorf("FillRequest(%v record) succeeded", rec.Entity())
		}
	}
}

func TestUserStateOf(t *testing.T) {
	t.Parallel()
	s := loadProject(t)
	set := func(rec *features.Record, name string, v int64) {
		f, ok := s.Lookup(name)
		if !ok {
			t.Fatalf("features.yaml lacks %s", name)
		}
		if err := rec.SetInt(f.ID, v); err != nil {
			t.Fatal(err)
		}
	}
	full := s.NewRecord(features.EntityUser)
	set(full, features.FeatureSessionKey, features.SessionKey("s1"))
	set(full, features.FeatureSessionStartMs, at("2026-11-24T11:50:00.250Z").UnixMilli())
	set(full, features.FeatureSessionInteractions, 4)
	set(full, features.FeatureLastInteractionMs, at("2026-11-24T11:58:30Z").UnixMilli())
	partial := s.NewRecord(features.EntityUser)
	set(partial, features.FeatureLastInteractionMs, at("2026-11-24T11:58:30Z").UnixMilli())
	set(partial, features.FeatureSessionStartMs, 0)
	tests := []struct {
		name string
		rec  *features.Record
		want features.UserState
	}{
		{"every field", full, features.UserState{SessionKey: features.SessionKey("s1"), SessionStart: at("2026-11-24T11:50:00.250Z"),
			SessionInteractions: 4, LastInteraction: at("2026-11-24T11:58:30Z")}},
		{"expired session, 0 timestamp", partial, features.UserState{LastInteraction: at("2026-11-24T11:58:30Z")}},
		{"nothing known", s.NewRecord(features.EntityUser), features.UserState{}},
	}
	for _, tt := range tests {
		got, err := s.UserStateOf(tt.rec)
		if err != nil || got != tt.want {
			t.Errorf("%s: UserStateOf() = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
	if _, err := s.UserStateOf(s.NewRecord(features.EntityItem)); err == nil {
		t.Error("UserStateOf(item record) succeeded")
	}
}

func TestSessionKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		id   string
		want int64
	}{
		{"", 0},
		// FNV-1a 64 of "a" is 0xaf63dc4c8601ec8c; the top bit is cleared.
		{"a", 0x2f63dc4c8601ec8c},
	}
	for _, tt := range tests {
		if got := features.SessionKey(tt.id); got != tt.want {
			t.Errorf("SessionKey(%q) = %#x, want %#x", tt.id, got, tt.want)
		}
	}
	if features.SessionKey("s1") == features.SessionKey("s2") || features.SessionKey("s1") <= 0 {
		t.Error("SessionKey does not tell s1 from s2, or is not positive")
	}
}

// BenchmarkFillRequest measures the request lane once per request.
func BenchmarkFillRequest(b *testing.B) {
	s := loadProject(b)
	rec := s.NewRecord(features.EntityRequest)
	rc := servingContext(requestCases()[9])
	b.ReportAllocs()
	for b.Loop() {
		if err := s.FillRequest(rec, rc); err != nil {
			b.Fatal(err)
		}
	}
}
