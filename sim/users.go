package sim

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// Population limits and defaults (see PopulationConfig).
const (
	MaxUsers           = 5_000_000
	DefaultUsers       = 10_000
	DefaultDriftPerDay = 0.01
)

// PopulationConfig describes the simulated users. Zero values mean the
// documented defaults.
type PopulationConfig struct {
	// Seed makes the population reproducible.
	Seed uint64
	// Users is the population size, 1..MaxUsers; default DefaultUsers.
	Users int
	// Start is the epoch of preference drift (the start of the history
	// window); required.
	Start time.Time
	// DriftPerDay is how far each user's taste moves per day from its
	// initial preference toward its drifted one, as a share of the way
	// (1 = all the way in a day); default DefaultDriftPerDay, negative for
	// no drift.
	DriftPerDay float64
	// Shift optionally changes many users' tastes abruptly at one time.
	Shift Shift
}

// Shift is an abrupt change of taste for a share of the users: from At on,
// their preference is blended toward a new, unrelated one. A model trained
// before At loses accuracy on them; a retrain on data after At recovers it.
type Shift struct {
	// At is when the shift happens; the zero time disables it.
	At time.Time
	// Share is the share of users affected; default 0.5.
	Share float64
	// Strength in (0, 1] is the weight of the new taste; default 0.8.
	Strength float64
}

func (c PopulationConfig) withDefaults() PopulationConfig {
	if c.Users == 0 {
		c.Users = DefaultUsers
	}
	c.DriftPerDay = share(c.DriftPerDay, DefaultDriftPerDay)
	if !c.Shift.At.IsZero() {
		c.Shift.Share = share(c.Shift.Share, 0.5)
		c.Shift.Strength = share(c.Shift.Strength, 0.8)
	}
	return c
}

// Validate reports every invalid field (after defaults are applied).
func (c PopulationConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Users < 1 || c.Users > MaxUsers {
		errs = append(errs, fmt.Errorf("population users: %d is not in 1..%d", c.Users, MaxUsers))
	}
	if c.Start.IsZero() {
		errs = append(errs, errors.New("population start: required"))
	}
	if c.DriftPerDay > 1 {
		errs = append(errs, fmt.Errorf("population drift_per_day: %g is more than 1", c.DriftPerDay))
	}
	if !c.Shift.At.IsZero() {
		if c.Shift.Share > 1 {
			errs = append(errs, fmt.Errorf("population shift share: %g is more than 1", c.Shift.Share))
		}
		if c.Shift.Strength > 1 {
			errs = append(errs, fmt.Errorf("population shift strength: %g is more than 1", c.Shift.Strength))
		}
	}
	return errors.Join(errs...)
}

// TimeZone is a home time zone with its standard UTC offset.
type TimeZone struct {
	// Name is the IANA name sent in request contexts.
	Name string
	// Offset is the standard offset from UTC.
	Offset time.Duration
}

// timeZones is the population's spread of home time zones, with weights.
var timeZones = []struct {
	tz     TimeZone
	weight float64
}{
	{TimeZone{"America/Los_Angeles", -8 * time.Hour}, 0.10},
	{TimeZone{"America/Denver", -7 * time.Hour}, 0.03},
	{TimeZone{"America/Chicago", -6 * time.Hour}, 0.08},
	{TimeZone{"America/New_York", -5 * time.Hour}, 0.14},
	{TimeZone{"America/Sao_Paulo", -3 * time.Hour}, 0.07},
	{TimeZone{"Europe/London", 0}, 0.08},
	{TimeZone{"Europe/Paris", time.Hour}, 0.09},
	{TimeZone{"Europe/Berlin", time.Hour}, 0.08},
	{TimeZone{"Africa/Lagos", time.Hour}, 0.03},
	{TimeZone{"Asia/Dubai", 4 * time.Hour}, 0.02},
	{TimeZone{"Asia/Kolkata", 5*time.Hour + 30*time.Minute}, 0.10},
	{TimeZone{"Asia/Jakarta", 7 * time.Hour}, 0.02},
	{TimeZone{"Asia/Shanghai", 8 * time.Hour}, 0.06},
	{TimeZone{"Asia/Tokyo", 9 * time.Hour}, 0.06},
	{TimeZone{"Australia/Sydney", 10 * time.Hour}, 0.04},
}

// deviceMix is the share of users whose main device is each class.
var deviceMix = []struct {
	device adaptrecv1.Device
	weight float64
}{
	{adaptrecv1.Device_DEVICE_MOBILE, 0.55},
	{adaptrecv1.Device_DEVICE_DESKTOP, 0.25},
	{adaptrecv1.Device_DEVICE_TABLET, 0.12},
	{adaptrecv1.Device_DEVICE_TV, 0.08},
}

// diurnal is relative activity by local hour (peak 1 at 21:00).
var diurnal = [24]float64{
	0.35, 0.22, 0.13, 0.08, 0.06, 0.07, 0.12, 0.22, 0.32, 0.38, 0.42, 0.46,
	0.52, 0.50, 0.48, 0.50, 0.56, 0.64, 0.74, 0.86, 0.96, 1.00, 0.86, 0.60,
}

// Diurnal returns relative activity (0..1] at a local hour in [0, 24),
// interpolating the hourly curve: low at night, peaking in the evening.
func Diurnal(hour float64) float64 {
	h := math.Mod(hour, 24)
	if h < 0 {
		h += 24
	}
	i := int(h)
	f := h - float64(i)
	return diurnal[i]*(1-f) + diurnal[(i+1)%24]*f
}

// User is one simulated user. Preferences are hidden ground truth: use
// Preference or the response model's oracle to read them.
type User struct {
	// ID is the user id used in events ("u0000042").
	ID string
	// Index is the user's position in Population.Users.
	Index int32
	// Activity is the user's relative session rate (mean 1, heavy-tailed).
	Activity float32
	// Device is the user's main device; sessions use it most of the time.
	Device adaptrecv1.Device
	// TimeZone is the user's home time zone.
	TimeZone TimeZone
	// Chronotype shifts the user's daily rhythm by this many hours.
	Chronotype float32
	// Shifted reports whether the population's Shift applies to this user.
	Shifted bool

	offset     int64   // TimeZone.Offset in seconds
	bias       float32 // click propensity added to every click logit
	favourites []int32 // categories the user browses to
	pref0      []float32
	pref1      []float32
	pref2      []float32 // nil unless Shifted
}

// LocalHour returns the user's local clock hour in [0, 24) at t.
func (u *User) LocalHour(t time.Time) float64 {
	return localHour(t.Unix(), int64(u.TimeZone.Offset/time.Second))
}

func localHour(unix, offset int64) float64 {
	s := (unix + offset) % 86400
	if s < 0 {
		s += 86400
	}
	return float64(s) / 3600
}

// activityAt returns the user's relative chance of being active at unix time t.
func (u *User) activityAt(t int64) float64 {
	return Diurnal(localHour(t, u.offset) - float64(u.Chronotype))
}

// Population is the set of simulated users. Read-only once built.
type Population struct {
	// Users are indexed by User.Index.
	Users []User

	start       int64 // drift epoch, unix seconds
	driftPerDay float64
	shiftAt     int64 // unix seconds; math.MaxInt64 when disabled
	strength    float32
	dim         int
	ids         map[string]int32
	activity    *alias
}

// UserID returns the id of the generated user with index i.
func UserID(i int) string { return "u" + pad(i, 7) }

// Lookup returns the index of the user with the given id.
func (p *Population) Lookup(id string) (int, bool) {
	i, ok := p.ids[id]
	return int(i), ok
}

// Len returns the number of users.
func (p *Population) Len() int { return len(p.Users) }

// NewPopulation generates users whose tastes live in the catalogue's latent
// space; the same configuration and catalogue always give the same users.
func NewPopulation(cat *Catalogue, cfg PopulationConfig) (*Population, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cat.Dim < 2 {
		return nil, fmt.Errorf("population: the catalogue has no latent vectors (dim %d); generate one with NewCatalogue", cat.Dim)
	}
	cfg = cfg.withDefaults()
	dim := cat.Dim
	r := newRNG(mix(cfg.Seed, streamUsers))
	p := &Population{
		Users:       make([]User, cfg.Users),
		start:       cfg.Start.Unix(),
		driftPerDay: cfg.DriftPerDay,
		shiftAt:     math.MaxInt64,
		dim:         dim,
		ids:         make(map[string]int32, cfg.Users),
	}
	if !cfg.Shift.At.IsZero() {
		p.shiftAt = cfg.Shift.At.Unix()
		p.strength = float32(cfg.Shift.Strength)
	}
	// Users favour big categories more often, as the catalogue does.
	catWeights := make([]float64, len(cat.Categories))
	for i := range catWeights {
		catWeights[i] = float64(len(cat.byCategory[i])) + 1
	}
	catAlias := newAlias(catWeights)
	tzWeights := make([]float64, len(timeZones))
	for i, z := range timeZones {
		tzWeights[i] = z.weight
	}
	tzAlias := newAlias(tzWeights)
	devWeights := make([]float64, len(deviceMix))
	for i, d := range deviceMix {
		devWeights[i] = d.weight
	}
	devAlias := newAlias(devWeights)

	prefs := make([]float32, 3*cfg.Users*dim)
	favs := make([]int32, 3*cfg.Users)
	activity := make([]float64, cfg.Users)
	mixture := func(dst []float32, cats []int32) {
		clear(dst)
		for _, c := range cats {
			w := float32(r.exp(1))
			for j, x := range cat.Categories[c].Centroid {
				dst[j] += w * x
			}
		}
		normalize(dst)
		for j := range dst {
			dst[j] += float32(0.35 * r.norm() / math.Sqrt(float64(dim)))
		}
		normalize(dst)
	}
	for i := range p.Users {
		u := &p.Users[i]
		u.ID = UserID(i)
		u.Index = int32(i)
		p.ids[u.ID] = int32(i)
		// Lognormal activity: most users are occasional, a few are heavy.
		activity[i] = math.Exp(1.2 * r.norm())
		u.Device = deviceMix[devAlias.sample(&r)].device
		u.TimeZone = timeZones[tzAlias.sample(&r)].tz
		u.Chronotype = float32(1.5 * r.norm())
		u.offset = int64(u.TimeZone.Offset / time.Second)
		u.bias = float32(0.4 * r.norm())

		k := 1
		if x := r.float64(); x > 0.5 {
			k = 2
			if x > 0.85 {
				k = 3
			}
		}
		fav := favs[3*i : 3*i+k : 3*i+k]
		for j := range fav {
			fav[j] = int32(catAlias.sample(&r))
		}
		u.favourites = fav
		base := prefs[3*i*dim : (3*i+1)*dim : (3*i+1)*dim]
		mixture(base, fav)
		u.pref0 = base
		// New tastes come from categories the user did not favour, so
		// that drift and shift really move them.
		newCategory := func() int32 {
			c := int32(catAlias.sample(&r))
			for range 16 {
				if !slices.Contains(fav, c) {
					break
				}
				c = int32(catAlias.sample(&r))
			}
			return c
		}
		// Drift target: half the old taste, half a newly found category.
		drift := prefs[(3*i+1)*dim : (3*i+2)*dim : (3*i+2)*dim]
		mixture(drift, []int32{newCategory()})
		for j := range drift {
			drift[j] = 0.5*drift[j] + 0.5*base[j]
		}
		normalize(drift)
		u.pref1 = drift
		if !cfg.Shift.At.IsZero() && r.bernoulli(cfg.Shift.Share) {
			u.Shifted = true
			shifted := prefs[(3*i+2)*dim : (3*i+3)*dim : (3*i+3)*dim]
			mixture(shifted, []int32{newCategory(), newCategory()})
			u.pref2 = shifted
		}
	}
	var total float64
	for _, a := range activity {
		total += a
	}
	for i := range p.Users {
		activity[i] *= float64(cfg.Users) / total
		p.Users[i].Activity = float32(activity[i])
	}
	p.activity = newAlias(activity)
	return p, nil
}

// Preference writes the user's unit preference vector at t into dst (which
// needs the catalogue's dimension) and returns it. Tastes drift linearly
// from the initial preference toward the drifted one, and users under the
// population's Shift jump toward a new taste at the shift time.
func (p *Population) Preference(u *User, t time.Time, dst []float32) []float32 {
	return p.preference(u, t.Unix(), dst)
}

func (p *Population) preference(u *User, t int64, dst []float32) []float32 {
	dst = dst[:p.dim]
	a := float32(0)
	if t > p.start && p.driftPerDay > 0 {
		a = float32(min(p.driftPerDay*float64(t-p.start)/86400, 1))
	}
	for j := range dst {
		dst[j] = (1-a)*u.pref0[j] + a*u.pref1[j]
	}
	if u.pref2 != nil && t >= p.shiftAt {
		s := p.strength
		for j := range dst {
			dst[j] = (1-s)*dst[j] + s*u.pref2[j]
		}
	}
	normalize(dst)
	return dst
}

// sampleUser picks a user in proportion to activity.
func (p *Population) sampleUser(r *rng) int32 { return int32(p.activity.sample(r)) }

// sessionDevice picks the device of a new session: the main one mostly.
func sessionDevice(r *rng, u *User) adaptrecv1.Device {
	if r.bernoulli(0.8) {
		return u.Device
	}
	x := r.float64()
	for _, d := range deviceMix {
		if x < d.weight {
			return d.device
		}
		x -= d.weight
	}
	return u.Device
}
