package features

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/fnv1a"
)

// Caps of the request lane's durations; a stale session id or a skewed
// clock must not produce values a model never saw in training.
const (
	// MaxSessionLength caps req_session_length_s.
	MaxSessionLength = 24 * time.Hour
	// MaxSinceLastInteraction caps req_since_last_interaction_s.
	MaxSinceLastInteraction = 30 * 24 * time.Hour
)

// UserState is what the nearline lane knows about a user just before a
// moment, read by UserStateOf from the user nearline features
// user_session_key, user_session_start_ms, user_session_interactions and
// user_last_interaction_ms: serving's record comes from the online store,
// training's from the point-in-time join of the same features. The zero
// value means nothing is known.
type UserState struct {
	// SessionKey is SessionKey(session id) of the user's latest
	// interaction; 0 when unknown.
	SessionKey int64
	// SessionStart is when that session's first interaction happened.
	SessionStart time.Time
	// SessionInteractions counts that session's interactions so far.
	SessionInteractions int64
	// LastInteraction is when the user last interacted, in any session.
	LastInteraction time.Time
}

// The user nearline features UserStateOf reads. Each is optional; when
// defined it must be a user int feature.
const (
	// FeatureSessionKey holds UserState.SessionKey.
	FeatureSessionKey = "user_session_key"
	// FeatureSessionStartMs holds UserState.SessionStart in Unix
	// milliseconds.
	FeatureSessionStartMs = "user_session_start_ms"
	// FeatureSessionInteractions holds UserState.SessionInteractions.
	FeatureSessionInteractions = "user_session_interactions"
	// FeatureLastInteractionMs holds UserState.LastInteraction in Unix
	// milliseconds.
	FeatureLastInteractionMs = "user_last_interaction_ms"
)

var userStateFeatures = []string{FeatureSessionKey, FeatureSessionStartMs, FeatureSessionInteractions, FeatureLastInteractionMs}

// UserStateOf reads a user's nearline state from a user record of the set:
// serving passes the record read from the online store, training the record
// of the point-in-time join, so both derive the state alike. Features the
// set does not define, or the record does not hold, stay unknown; so do
// timestamps of 0.
func (s *FeatureSet) UserStateOf(user *Record) (UserState, error) {
	if user.set != s || user.entity != EntityUser {
		return UserState{}, fmt.Errorf("%w: UserStateOf needs a user record of %s, got a %s record", ErrWrongRecord, s.source, user.entity)
	}
	get := func(name string) int64 {
		f, ok := s.byName[name]
		if !ok || !user.isSet(f.index) {
			return 0
		}
		return user.ints[f.slot]
	}
	ms := func(v int64) time.Time {
		if v <= 0 {
			return time.Time{}
		}
		return time.UnixMilli(v).UTC()
	}
	return UserState{
		SessionKey:          get(FeatureSessionKey),
		SessionStart:        ms(get(FeatureSessionStartMs)),
		SessionInteractions: get(FeatureSessionInteractions),
		LastInteraction:     ms(get(FeatureLastInteractionMs)),
	}, nil
}

// SessionKey maps a session id to the int the nearline lane stores for it
// (64-bit FNV-1a, never 0, so 0 can mean "no session").
func SessionKey(sessionID string) int64 {
	if sessionID == "" {
		return 0
	}
	k := int64(fnv1a.String(sessionID) &^ (1 << 63))
	if k == 0 {
		return 1
	}
	return k
}

// RequestContext holds the facts the request lane computes features from.
// Serving builds it with RequestFromRecommend, training with
// RequestFromEvent; FillRequest then computes the same values from the same
// facts. Times are read at millisecond precision, the archive's.
type RequestContext struct {
	// Time is the instant of the request; zero when unknown.
	Time time.Time
	// TimeZone is the client's IANA time zone ("Europe/Paris"); "" when
	// unknown. Local hour and day of week need it and are the defaults
	// without it (or when the zone is not a valid IANA name).
	TimeZone string
	// Device is the client device.
	Device adaptrecv1.Device
	// Surface is the placement ("home", "item_page").
	Surface string
	// SessionID is the client's session id; "" when unknown.
	SessionID string
	// User is the user's nearline state just before Time.
	User UserState
}

// RequestFromRecommend builds the context of a Recommend call. The client's
// local_time is the request time when present (it is what the user's day
// looks like), serverNow otherwise.
func RequestFromRecommend(req *adaptrecv1.RecommendRequest, serverNow time.Time, user UserState) RequestContext {
	rc := req.GetContext()
	t := serverNow
	if lt := rc.GetLocalTime(); lt != nil && lt.IsValid() {
		t = lt.AsTime()
	}
	return RequestContext{
		Time:      t,
		TimeZone:  rc.GetTimeZone(),
		Device:    rc.GetDevice(),
		Surface:   req.GetSurface(),
		SessionID: rc.GetSessionId(),
		User:      user,
	}
}

// ArchivedEvent holds the columns of an archived event (eventlog.Row) that
// the request lane reads. It is declared here, not taken from eventlog, so
// that serving does not link the Parquet and S3 code.
type ArchivedEvent struct {
	// EventTime is eventlog.Row.EventTime.
	EventTime time.Time
	// Device is eventlog.Row.Device: the protobuf enum name
	// ("DEVICE_MOBILE"), "" for unspecified.
	Device string
	// SessionID is eventlog.Row.SessionID.
	SessionID string
	// Surface is eventlog.Row.Surface.
	Surface string
}

// RequestFromEvent builds the context of the request behind an archived
// event, for training rows. Archived events do not carry the client's time
// zone: timeZone is the user's zone from their profile. user is the nearline
// state as of just before the event's time (a point-in-time join).
func RequestFromEvent(e ArchivedEvent, timeZone string, user UserState) RequestContext {
	return RequestContext{
		Time:      e.EventTime,
		TimeZone:  timeZone,
		Device:    adaptrecv1.Device(adaptrecv1.Device_value[e.Device]),
		Surface:   e.Surface,
		SessionID: e.SessionID,
		User:      user,
	}
}

// FillRequest computes every request-lane feature of the set into rec (a
// request record of this set), after unsetting all of them: a feature whose
// inputs are missing is left unset and reads as its declared default. It
// does not allocate once the time zone is cached.
func (s *FeatureSet) FillRequest(rec *Record, c RequestContext) error {
	if rec.set != s || rec.entity != EntityRequest {
		return fmt.Errorf("%w: FillRequest needs a request record of %s, got a %s record", ErrWrongRecord, s.source, rec.entity)
	}
	rec.Reset()
	m := newMoment(&c)
	for _, f := range s.byEntity[EntityRequest] {
		m.fill(rec, f)
	}
	return nil
}

// moment is a RequestContext digested once for all request features.
type moment struct {
	device       adaptrecv1.Device
	surface      string
	local        time.Time // Time in the client's zone
	localOK      bool
	sessionLen   time.Duration
	interactions int64
	sessionOK    bool
	sinceLast    time.Duration
	sinceOK      bool
}

func newMoment(c *RequestContext) moment {
	m := moment{device: c.Device, surface: c.Surface}
	if c.Time.IsZero() {
		return m
	}
	// Milliseconds: the precision of archived event times and of the
	// nearline *_ms features. Finer digits exist only on the serving side
	// and would make its values differ from training's.
	now := c.Time.Truncate(time.Millisecond)
	if loc := zone(c.TimeZone); loc != nil {
		m.local, m.localOK = now.In(loc), true
	}
	u := &c.User
	if c.SessionID != "" && u.SessionKey != 0 && SessionKey(c.SessionID) == u.SessionKey && !u.SessionStart.IsZero() {
		m.sessionLen = min(max(now.Sub(u.SessionStart.Truncate(time.Millisecond)), 0), MaxSessionLength)
		m.interactions = max(u.SessionInteractions, 0)
		m.sessionOK = true
	}
	if !u.LastInteraction.IsZero() {
		m.sinceLast = min(max(now.Sub(u.LastInteraction.Truncate(time.Millisecond)), 0), MaxSinceLastInteraction)
		m.sinceOK = true
	}
	return m
}

// fractionalHour is the local time of day in hours, in [0, 24).
func (m *moment) fractionalHour() float64 {
	h, mi, s := m.local.Clock()
	return float64(h) + float64(mi)/60 + (float64(s)+float64(m.local.Nanosecond())/1e9)/3600
}

// requestOp is one computation of the request lane. FillRequest switches
// on it rather than calling through function values: an indirect call would
// make its arguments escape to the heap on every request.
type requestOp uint8

const (
	opNone requestOp = iota
	opLocalHour
	opHourSin
	opHourCos
	opDayOfWeek
	opIsWeekend
	opDevice
	opSurface
	opSessionLength
	opSessionInteractions
	opSinceLastInteraction
)

// requestFeature describes one computation: what it is, the kind it
// produces and, for one-hot vectors, what a valid vocabulary is.
type requestFeature struct {
	op   requestOp
	kind Kind
	// vocab checks a one-hot vector's vocabulary; nil for other kinds.
	vocab func(v []string) string
}

// requestLane is every computation the request lane knows, by feature name.
var requestLane = map[string]requestFeature{
	"req_local_hour":               {op: opLocalHour, kind: KindInt},
	"req_hour_sin":                 {op: opHourSin, kind: KindFloat},
	"req_hour_cos":                 {op: opHourCos, kind: KindFloat},
	"req_day_of_week":              {op: opDayOfWeek, kind: KindInt},
	"req_is_weekend":               {op: opIsWeekend, kind: KindInt},
	"req_device":                   {op: opDevice, kind: KindVector, vocab: checkDeviceVocabulary},
	"req_surface":                  {op: opSurface, kind: KindVector, vocab: func([]string) string { return "" }},
	"req_session_length_s":         {op: opSessionLength, kind: KindFloat},
	"req_session_interactions":     {op: opSessionInteractions, kind: KindInt},
	"req_since_last_interaction_s": {op: opSinceLastInteraction, kind: KindFloat},
}

// fill computes one request feature into r, or leaves it unset (default)
// when its inputs are missing.
func (m *moment) fill(r *Record, f *Feature) {
	switch f.requestOp {
	case opLocalHour:
		if m.localOK {
			setInt(r, f, int64(m.local.Hour()))
		}
	case opHourSin:
		if m.localOK {
			setFloat(r, f, math.Sin(2*math.Pi*m.fractionalHour()/24))
		}
	case opHourCos:
		if m.localOK {
			setFloat(r, f, math.Cos(2*math.Pi*m.fractionalHour()/24))
		}
	case opDayOfWeek:
		if m.localOK {
			setInt(r, f, int64((m.local.Weekday()+6)%7)) // Monday is 0
		}
	case opIsWeekend:
		if m.localOK {
			wd := m.local.Weekday()
			setInt(r, f, b2i(wd == time.Saturday || wd == time.Sunday))
		}
	case opDevice:
		oneHot(r, f, deviceLabel(m.device))
	case opSurface:
		oneHot(r, f, m.surface)
	case opSessionLength:
		if m.sessionOK {
			setFloat(r, f, m.sessionLen.Seconds())
		}
	case opSessionInteractions:
		if m.sessionOK {
			setInt(r, f, m.interactions)
		}
	case opSinceLastInteraction:
		if m.sinceOK {
			setFloat(r, f, m.sinceLast.Seconds())
		}
	}
}

func setFloat(r *Record, f *Feature, v float64) {
	r.nums[f.slot] = float32(v)
	r.mark(f)
}

func setInt(r *Record, f *Feature, v int64) {
	r.ints[f.slot] = v
	r.mark(f)
}

// oneHot sets the vocabulary entry equal to label, or leaves the feature
// unset when the label is not in the vocabulary.
func oneHot(r *Record, f *Feature, label string) {
	if label == "" {
		return
	}
	if i := slices.Index(f.Vocabulary, label); i >= 0 {
		r.vector(f)[i] = 1
	}
}

// deviceLabels are the vocabulary names of devices: the enum name without
// its prefix, in lower case ("mobile"); "" for unspecified.
var deviceLabels = func() []string {
	n := int32(0)
	for v := range adaptrecv1.Device_name {
		n = max(n, v+1)
	}
	out := make([]string, n)
	for v, name := range adaptrecv1.Device_name {
		if v > 0 {
			out[v] = strings.ToLower(strings.TrimPrefix(name, "DEVICE_"))
		}
	}
	return out
}()

func deviceLabel(d adaptrecv1.Device) string {
	if d > 0 && int(d) < len(deviceLabels) {
		return deviceLabels[d]
	}
	return ""
}

func checkDeviceVocabulary(v []string) string {
	for _, name := range v {
		if name == "" || !slices.Contains(deviceLabels, name) {
			return fmt.Sprintf("vocabulary entry %q is not a device (known: %s)", name, strings.Join(deviceLabels[1:], ", "))
		}
	}
	return ""
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// RequestFeatureNames lists the request features the request lane can
// compute, sorted.
func RequestFeatureNames() []string {
	names := make([]string, 0, len(requestLane))
	for n := range requestLane {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// checkRequestFeature says what is wrong with a request-lane definition, or
// "" when the request lane computes it as defined.
func checkRequestFeature(f *Feature) string {
	rf, ok := requestLane[f.Name]
	if !ok {
		return fmt.Sprintf("the request lane has no computation for %s (it computes %s)", f.Name, strings.Join(RequestFeatureNames(), ", "))
	}
	if f.Type.Kind != rf.kind {
		want := Type{Kind: rf.kind}.String()
		if rf.kind == KindVector {
			want = "vector[n]"
		}
		return fmt.Sprintf("the request lane computes %s as %s, not %s", f.Name, want, f.Type)
	}
	if rf.kind == KindVector {
		if f.Vocabulary == nil {
			return fmt.Sprintf("vocabulary: required: %s is one-hot, each component names a value", f.Name)
		}
		return rf.vocab(f.Vocabulary)
	}
	return ""
}

// checkUserStateFeature says what is wrong with the definition of a feature
// UserStateOf reads, or "" when it is fine (or not such a feature).
func checkUserStateFeature(f *Feature) string {
	if !slices.Contains(userStateFeatures, f.Name) || (f.Entity == EntityUser && f.Type.Kind == KindInt) {
		return ""
	}
	return fmt.Sprintf("the request lane reads %s as the user's nearline state: it must be a user int feature, not %s %s", f.Name, f.Entity, f.Type)
}

// maxCachedZones bounds the zone cache; names come from clients.
const maxCachedZones = 1024

var zones = struct {
	sync.RWMutex
	m map[string]*time.Location // nil: not a valid zone
}{m: map[string]*time.Location{}}

// zone returns the named IANA zone, or nil when the name is empty or not a
// zone. "Local" is refused: it would be the server's zone, not the client's.
// time.LoadLocation reads the zone database on every call, so zones are
// cached.
func zone(name string) *time.Location {
	if name == "" || name == "Local" {
		return nil
	}
	zones.RLock()
	loc, ok := zones.m[name]
	zones.RUnlock()
	if ok {
		return loc
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		loc = nil
	}
	zones.Lock()
	if len(zones.m) < maxCachedZones {
		zones.m[name] = loc
	}
	zones.Unlock()
	return loc
}
