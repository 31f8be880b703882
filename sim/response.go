package sim

import (
	"container/heap"
	"math"
	"time"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

// ResponseParams are the weights of the response model. Zero values mean the
// documented defaults; a negative weight (other than ClickBias) switches its
// term off.
type ResponseParams struct {
	// ClickBias is the click logit intercept; default -3.2 (zero means the
	// default, so an intercept of exactly 0 cannot be set).
	ClickBias float64
	// Affinity weighs preference·latent (in [-1, 1]); default 4.5.
	Affinity float64
	// Quality weighs item quality minus 0.5; default 1.5.
	Quality float64
	// Freshness weighs 2^(-age/FreshnessHalfLife); default 0.8.
	Freshness float64
	// FreshnessHalfLife is the age at which the freshness boost halves;
	// default 48h.
	FreshnessHalfLife time.Duration
	// TimeOfDay weighs cos(2π(local hour − category peak hour)/24); default 0.5.
	TimeOfDay float64
	// PositionDecay is η in the examination probability (1+position)^−η;
	// default 0.7.
	PositionDecay float64
	// FlaggedPenalty is subtracted from the click logit of flagged items and
	// added to their skip logit; default 1.5.
	FlaggedPenalty float64
}

func (p ResponseParams) withDefaults() ResponseParams {
	if p.ClickBias == 0 {
		p.ClickBias = -3.2
	}
	p.Affinity = share(p.Affinity, 4.5)
	p.Quality = share(p.Quality, 1.5)
	p.Freshness = share(p.Freshness, 0.8)
	if p.FreshnessHalfLife <= 0 {
		p.FreshnessHalfLife = 48 * time.Hour
	}
	p.TimeOfDay = share(p.TimeOfDay, 0.5)
	p.PositionDecay = share(p.PositionDecay, 0.7)
	p.FlaggedPenalty = share(p.FlaggedPenalty, 1.5)
	return p
}

// ResponseModel decides how users respond to items: a position-based click
// model whose attraction comes from the hidden preference·latent affinity,
// item quality, freshness and the time of day, followed by watch, completion,
// purchase and skip decisions. It is the ground truth ("oracle") against
// which recommendations are measured. Safe for concurrent use.
type ResponseModel struct {
	cat    *Catalogue
	pop    *Population
	params ResponseParams

	examine  [64]float64 // examination probability by position
	halfLife float64     // seconds
	device   [5]float64  // completion logit adjustment by device
	peakCos  []float64   // cos and sin of each category's peak hour angle
	peakSin  []float64
}

// NewResponseModel returns the response model of a world.
func NewResponseModel(cat *Catalogue, pop *Population, params ResponseParams) *ResponseModel {
	p := params.withDefaults()
	m := &ResponseModel{cat: cat, pop: pop, params: p, halfLife: p.FreshnessHalfLife.Seconds()}
	for i := range m.examine {
		m.examine[i] = math.Pow(float64(1+i), -p.PositionDecay)
	}
	m.device = [5]float64{
		adaptrecv1.Device_DEVICE_MOBILE:  -0.2,
		adaptrecv1.Device_DEVICE_DESKTOP: 0.2,
		adaptrecv1.Device_DEVICE_TABLET:  0.1,
		adaptrecv1.Device_DEVICE_TV:      0.6,
	}
	m.peakCos = make([]float64, len(cat.Categories))
	m.peakSin = make([]float64, len(cat.Categories))
	for i, c := range cat.Categories {
		a := 2 * math.Pi * float64(c.PeakHour) / 24
		m.peakCos[i], m.peakSin[i] = math.Cos(a), math.Sin(a)
	}
	return m
}

// Params returns the weights in use, defaults applied.
func (m *ResponseModel) Params() ResponseParams { return m.params }

// Exposure is the situation in which an item is shown.
type Exposure struct {
	// Position is the 0-based rank on the page; negative when the user
	// reached the item by themselves (no position bias).
	Position int
	// At is when the item is shown.
	At time.Time
	// Device is the client class; it changes completion rates.
	Device adaptrecv1.Device
}

// Probabilities are the chances of each response to one exposure. All are
// unconditional: Watch is the chance to click and then watch, and so on.
type Probabilities struct {
	// Examine is the chance the user looks at the position at all.
	Examine float64
	// Click is the chance of a click: Examine × attraction.
	Click float64
	// Watch is the chance of a click followed by watching.
	Watch float64
	// Complete is the chance of watching to the end.
	Complete float64
	// Purchase is the chance of a click followed by a purchase.
	Purchase float64
	// Skip is the chance of an explicit skip (examined, not clicked).
	Skip float64
}

// viewer is the per-page state of the hot path: the user's preference and
// clock at the page's time, computed once per page.
type viewer struct {
	user    *User
	pref    [MaxDim]float32
	t       int64
	hourCos float64 // cos and sin of the local hour angle
	hourSin float64
	device  adaptrecv1.Device
}

func (m *ResponseModel) setViewer(v *viewer, u *User, t int64, device adaptrecv1.Device) {
	v.user, v.t, v.device = u, t, device
	m.pop.preference(u, t, v.pref[:])
	a := 2 * math.Pi * localHour(t, u.offset) / 24
	v.hourCos, v.hourSin = math.Cos(a), math.Sin(a)
}

// response holds the conditional probabilities for one item and viewer.
type response struct {
	aff       float64
	attract   float64 // P(click | examined)
	watch     float64 // P(watch | click)
	complete  float64 // P(complete | watch)
	purchase  float64 // P(purchase | click)
	skip      float64 // P(skip | examined, not clicked)
	published bool
}

func (m *ResponseModel) respond(v *viewer, item int32) response {
	it := &m.cat.Items[item]
	if m.cat.pubUnix[item] > v.t {
		return response{}
	}
	p := &m.params
	aff := dot(v.pref[:m.cat.Dim], it.Latent)
	q := float64(it.Quality) - 0.5
	logit := p.ClickBias + p.Affinity*aff + p.Quality*q + float64(v.user.bias)
	if p.Freshness > 0 && m.cat.pubUnix[item] != math.MinInt64 {
		age := float64(v.t - m.cat.pubUnix[item])
		logit += p.Freshness * math.Exp2(-age/m.halfLife)
	}
	if p.TimeOfDay > 0 {
		if c := it.Category(); c >= 0 {
			// cos(h − peak) = cos h cos peak + sin h sin peak
			logit += p.TimeOfDay * (v.hourCos*m.peakCos[c] + v.hourSin*m.peakSin[c])
		}
	}
	flagged := 0.0
	if it.Flagged {
		flagged = 1
	}
	logit -= flagged * p.FlaggedPenalty
	dur := max(float64(it.Duration), 1)
	price := max(float64(it.Price), 0.01)
	return response{
		aff:       aff,
		attract:   sigmoid(logit),
		watch:     sigmoid(1.2 + 1.5*aff + q - flagged),
		complete:  sigmoid(-1.5 + 2.5*aff + 2*q - 0.5*math.Log(dur/600) + m.deviceAdjust(v.device)),
		purchase:  sigmoid(-4.5 + 2*aff + 1.5*q - 0.4*math.Log(price/10)),
		skip:      sigmoid(-2.2 - 2.5*aff + flagged*(1+p.FlaggedPenalty)),
		published: true,
	}
}

func (m *ResponseModel) deviceAdjust(d adaptrecv1.Device) float64 {
	if d < 0 || int(d) >= len(m.device) {
		return 0
	}
	return m.device[d]
}

// examination returns P(examine) at a position (1 when negative).
func (m *ResponseModel) examination(pos int) float64 {
	switch {
	case pos < 0:
		return 1
	case pos < len(m.examine):
		return m.examine[pos]
	}
	return math.Pow(float64(1+pos), -m.params.PositionDecay)
}

// Probabilities returns the true response probabilities of user u to item it
// in exposure e. Items not yet published at e.At get all zeros.
func (m *ResponseModel) Probabilities(u *User, it *Item, e Exposure) Probabilities {
	var v viewer
	m.setViewer(&v, u, e.At.Unix(), e.Device)
	idx, ok := m.cat.Lookup(it.ID)
	if !ok {
		return Probabilities{}
	}
	r := m.respond(&v, int32(idx))
	ex := m.examination(e.Position)
	click := ex * r.attract
	return Probabilities{
		Examine:  ex,
		Click:    click,
		Watch:    click * r.watch,
		Complete: click * r.watch * r.complete,
		Purchase: click * r.purchase,
		Skip:     ex * (1 - r.attract) * r.skip,
	}
}

// ClickProbability is the oracle: the true chance that u clicks it in e.
func (m *ResponseModel) ClickProbability(u *User, it *Item, e Exposure) float64 {
	return m.Probabilities(u, it, e).Click
}

// BestItems returns the indexes of the k published items u is most likely to
// click at t, best first: what a perfect recommender would show.
func (m *ResponseModel) BestItems(u *User, t time.Time, k int) []int {
	var v viewer
	m.setViewer(&v, u, t.Unix(), u.Device)
	h := make(scoredHeap, 0, k+1)
	for i := range m.cat.Items {
		r := m.respond(&v, int32(i))
		if !r.published {
			continue
		}
		if len(h) < k {
			heap.Push(&h, scored{i, r.attract})
		} else if k > 0 && r.attract > h[0].score {
			h[0] = scored{i, r.attract}
			heap.Fix(&h, 0)
		}
	}
	out := make([]int, len(h))
	for i := len(h) - 1; i >= 0; i-- {
		out[i] = heap.Pop(&h).(scored).item
	}
	return out
}

type scored struct {
	item  int
	score float64
}

// scoredHeap is a min-heap on score, so the root is the worst kept item.
type scoredHeap []scored

func (h scoredHeap) Len() int { return len(h) }
func (h scoredHeap) Less(i, j int) bool {
	if h[i].score != h[j].score {
		return h[i].score < h[j].score
	}
	return h[i].item > h[j].item
}
func (h scoredHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *scoredHeap) Push(x any)   { *h = append(*h, x.(scored)) }
func (h *scoredHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// outcome is one sampled response.
type outcome struct {
	click, watch, complete, purchase, skip bool
	watched                                float64 // seconds
}

// sample draws a response from conditionals r at a position (negative: the
// user chose the item, so the click is given).
func (m *ResponseModel) sample(rn *rng, r *response, it *Item, pos int) outcome {
	var o outcome
	if !r.published {
		return o
	}
	if pos >= 0 {
		if !rn.bernoulli(m.examination(pos)) {
			return o
		}
		if !rn.bernoulli(r.attract) {
			o.skip = rn.bernoulli(r.skip)
			return o
		}
	}
	o.click = true
	if rn.bernoulli(r.watch) {
		o.watch = true
		if rn.bernoulli(r.complete) {
			o.complete = true
			o.watched = float64(it.Duration)
		} else {
			o.watched = math.Round(float64(it.Duration) * (0.03 + 0.87*rn.float64()))
		}
	}
	o.purchase = rn.bernoulli(r.purchase)
	return o
}
