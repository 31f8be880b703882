package feedback

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/adaptrec/adaptrec/events"
	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
	"github.com/adaptrec/adaptrec/internal/config"
)

// pairGrace is how long after a prediction was produced its counterpart
// (the served prediction of a shadow one, or the reverse) may be produced:
// serving publishes both through one asynchronous buffer, the shadow after a
// queue and scoring, within seconds. The scan of ReadShadowReport reads
// this far past to.
const pairGrace = time.Minute

// topK is the list length TopKOverlap compares.
const topK = 10

// ShadowReport compares a shadow version's predictions with the served ones of the same requests.
type ShadowReport struct {
	ShadowVersion      string
	ProductionVersions []string // served versions the shadow was compared against
	Requests           int64    // shadow predictions found
	Matched            int64    // of them, with the served prediction of the same request found
	// ScoreCorrelation is the Pearson correlation of the served and shadow
	// scores of the items both ranked, pooled over the matched requests.
	// It is never NaN: when it is undefined (fewer than two common items,
	// constant scores) it is 0 and Notes says why.
	ScoreCorrelation float64
	// RankCorrelation is the mean over the matched requests with at least
	// two common items of the Spearman correlation of the two rankings
	// restricted to the common items (0 with a note when there are none).
	RankCorrelation float64
	// TopKOverlap is the mean over the matched requests of |top10 ∩ top10|
	// divided by the length compared, min(10, the shorter list), so that
	// identical lists of five items score 1, not 0.5.
	TopKOverlap float64
	// LatencyP50Ms and LatencyP99Ms are nearest-rank percentiles of the
	// shadow predictions' latency_ms.
	LatencyP50Ms, LatencyP99Ms float64
	// ErrorRate is the share of the shadow predictions that are failures
	// (shadowFailed): serving publishes a mirror the shadow model failed to
	// score or scored too late without items, at an IsError level
	// (serving.ShadowFailedLevel). Failures are not matched with the served
	// prediction: they have nothing to compare. A mirror dropped because
	// the scoring queue was full is no failure of the version and is only
	// counted in adaptrec_serving_shadow_total{outcome="dropped"}.
	ErrorRate float64
	From, To  time.Time
	// Notes say why a statistic is 0 because it is undefined.
	Notes []string
}

// ReadShadowReport scans TopicPredictions from the offsets at time from (kafka-go can look up offsets by time) up to to.
//
// The shadow predictions of shadowVersion with event times in [from, to) are
// compared with the served (non-shadow) prediction of the same request id;
// both are keyed by user, so they share a partition. The scan reads up to
// pairGrace past to, since a prediction is produced after its event time,
// and its counterpart may be produced up to pairGrace after it.
func ReadShadowReport(ctx context.Context, k config.Kafka, shadowVersion string, from, to time.Time) (ShadowReport, error) {
	rep := ShadowReport{ShadowVersion: shadowVersion, From: from.UTC(), To: to.UTC()}
	if shadowVersion == "" {
		return rep, errors.New("shadow report: the shadow model version is required")
	}
	if err := checkRange(from, to); err != nil {
		return rep, fmt.Errorf("shadow report for %s: %w", shadowVersion, err)
	}
	var mu sync.Mutex
	parts := map[int]*pairing{}
	err := scan(ctx, k, events.TopicPredictions, from, to.Add(pairGrace), func(partition int, m kafka.Message, e *adaptrecv1.Event) {
		mu.Lock()
		p := parts[partition]
		if p == nil {
			p = newPairing(shadowVersion, from, to)
			parts[partition] = p
		}
		mu.Unlock()
		if pr := e.GetPrediction(); pr != nil {
			p.add(m.Time, e.GetEnvelope().GetEventTime().AsTime(), pr)
		}
	})
	if err != nil {
		return rep, fmt.Errorf("shadow report for %s: %w", shadowVersion, err)
	}
	total := newPairing(shadowVersion, from, to)
	for _, p := range parts {
		total.merge(p)
	}
	total.report(&rep)
	return rep, nil
}

// side is one prediction of a pair: its items in position order.
type side struct {
	version string
	items   []scoredItem
	queued  time.Time // message time, for eviction
}

type scoredItem struct {
	id    string
	score float64
}

func newSide(pr *adaptrecv1.PredictionEvent, at time.Time) *side {
	its := slices.Clone(pr.GetItems())
	slices.SortStableFunc(its, func(a, b *adaptrecv1.ServedItem) int { return cmp.Compare(a.GetPosition(), b.GetPosition()) })
	s := &side{version: pr.GetModelVersion(), items: make([]scoredItem, len(its)), queued: at}
	for i, it := range its {
		s.items[i] = scoredItem{it.GetItemId(), float64(it.GetScore())}
	}
	return s
}

// moments accumulates the co-moments of (x, y) pairs (Welford), mergeable.
type moments struct {
	n             int64
	mx, my        float64
	m2x, m2y, cxy float64
}

func (m *moments) add(x, y float64) {
	m.n++
	dx := x - m.mx
	m.mx += dx / float64(m.n)
	dy := y - m.my
	m.my += dy / float64(m.n)
	m.m2x += dx * (x - m.mx)
	m.m2y += dy * (y - m.my)
	m.cxy += dx * (y - m.my)
}

func (m *moments) merge(o moments) {
	if o.n == 0 {
		return
	}
	if m.n == 0 {
		*m = o
		return
	}
	n := float64(m.n + o.n)
	dx, dy := o.mx-m.mx, o.my-m.my
	f := float64(m.n) * float64(o.n) / n
	m.m2x += o.m2x + dx*dx*f
	m.m2y += o.m2y + dy*dy*f
	m.cxy += o.cxy + dx*dy*f
	m.mx += dx * float64(o.n) / n
	m.my += dy * float64(o.n) / n
	m.n += o.n
}

// pearson returns the correlation, or why it is undefined.
func (m *moments) pearson() (float64, string) {
	switch {
	case m.n < 2:
		return 0, fmt.Sprintf("score correlation undefined: %d common item scores, at least 2 needed", m.n)
	case m.m2x <= 0 || m.m2y <= 0:
		return 0, "score correlation undefined: the served or the shadow scores are all equal"
	}
	r := m.cxy / math.Sqrt(m.m2x*m.m2y)
	return max(-1, min(1, r)), ""
}

// pairing pairs the shadow and served predictions of one partition and
// accumulates the report's statistics.
type pairing struct {
	version  string
	from, to time.Time
	// served and shadow wait for their counterpart, in produce order
	// (queue) for eviction after pairGrace.
	served, shadow map[string]*side
	queue          []string
	head           int
	seenShadow     map[string]bool

	requests, matched, errors int64
	prodVersions              map[string]bool
	scores                    moments
	spearmanSum               float64
	spearmanN                 int64
	overlapSum                float64
	overlapN                  int64
	latencies                 []float64
}

func newPairing(version string, from, to time.Time) *pairing {
	return &pairing{version: version, from: from, to: to, served: map[string]*side{}, shadow: map[string]*side{},
		seenShadow: map[string]bool{}, prodVersions: map[string]bool{}}
}

// add takes one prediction produced at produced with event time t.
func (p *pairing) add(produced, t time.Time, pr *adaptrecv1.PredictionEvent) {
	p.evict(produced)
	id := pr.GetRequestId()
	if pr.GetShadow() {
		if pr.GetModelVersion() != p.version || t.Before(p.from) || !t.Before(p.to) || p.seenShadow[id] {
			return
		}
		p.seenShadow[id] = true
		p.requests++
		p.latencies = append(p.latencies, pr.GetLatencyMs())
		if shadowFailed(pr) {
			p.errors++
			return
		}
		sh := newSide(pr, produced)
		if sv := p.served[id]; sv != nil {
			delete(p.served, id)
			p.pair(sv, sh)
			return
		}
		p.shadow[id] = sh
		p.queue = append(p.queue, id)
		return
	}
	if _, dup := p.served[id]; dup {
		return
	}
	sv := newSide(pr, produced)
	if sh := p.shadow[id]; sh != nil {
		delete(p.shadow, id)
		p.pair(sv, sh)
		return
	}
	p.served[id] = sv
	p.queue = append(p.queue, id)
}

// shadowFailed reports whether a shadow prediction records a failure: a
// level IsError counts, or no items (nothing was ranked).
func shadowFailed(pr *adaptrecv1.PredictionEvent) bool {
	return IsError(pr.GetDegradationLevel()) || len(pr.GetItems()) == 0
}

// evict forgets the predictions produced more than pairGrace before now:
// their counterpart is not coming.
func (p *pairing) evict(now time.Time) {
	for ; p.head < len(p.queue); p.head++ {
		id := p.queue[p.head]
		s := p.served[id]
		if s == nil {
			s = p.shadow[id]
		}
		if s == nil {
			continue // paired
		}
		if now.Sub(s.queued) <= pairGrace {
			break
		}
		delete(p.served, id)
		delete(p.shadow, id)
	}
	if p.head > 1024 && p.head > len(p.queue)/2 {
		p.queue = p.queue[:copy(p.queue, p.queue[p.head:])]
		p.head = 0
	}
}

// pair compares a served prediction with the shadow one of its request.
func (p *pairing) pair(sv, sh *side) {
	p.matched++
	p.prodVersions[sv.version] = true
	rank := make(map[string]int, len(sh.items))
	for i, it := range sh.items {
		if _, ok := rank[it.id]; !ok {
			rank[it.id] = i
		}
	}
	// Common items, in served order, with their shadow positions.
	var common []int
	seen := make(map[string]bool, len(sv.items))
	for _, it := range sv.items {
		j, ok := rank[it.id]
		if !ok || seen[it.id] {
			continue
		}
		seen[it.id] = true
		common = append(common, j)
		p.scores.add(it.score, sh.items[j].score)
	}
	if n := len(common); n >= 2 {
		// Ranks among the common items: served order is 0..n-1; the
		// shadow rank of each is its place among the common positions.
		order := make([]int, n)
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(common[a], common[b]) })
		var d2 float64
		for r, i := range order {
			d := float64(r - i)
			d2 += d * d
		}
		fn := float64(n)
		p.spearmanSum += 1 - 6*d2/(fn*(fn*fn-1))
		p.spearmanN++
	}
	if k := min(topK, len(sv.items), len(sh.items)); k > 0 {
		top := make(map[string]bool, k)
		for _, it := range sv.items[:k] {
			top[it.id] = true
		}
		hit := 0
		for _, it := range sh.items[:k] {
			if top[it.id] {
				hit++
				delete(top, it.id)
			}
		}
		p.overlapSum += float64(hit) / float64(k)
		p.overlapN++
	}
}

// merge adds another partition's statistics.
func (p *pairing) merge(o *pairing) {
	p.requests += o.requests
	p.matched += o.matched
	p.errors += o.errors
	for v := range o.prodVersions {
		p.prodVersions[v] = true
	}
	p.scores.merge(o.scores)
	p.spearmanSum += o.spearmanSum
	p.spearmanN += o.spearmanN
	p.overlapSum += o.overlapSum
	p.overlapN += o.overlapN
	p.latencies = append(p.latencies, o.latencies...)
}

// report fills rep from the merged statistics.
func (p *pairing) report(rep *ShadowReport) {
	rep.Requests, rep.Matched = p.requests, p.matched
	rep.ProductionVersions = make([]string, 0, len(p.prodVersions))
	for v := range p.prodVersions {
		rep.ProductionVersions = append(rep.ProductionVersions, v)
	}
	slices.Sort(rep.ProductionVersions)
	if p.requests == 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("no shadow predictions of %s in [%s, %s)", p.version,
			p.from.UTC().Format(time.RFC3339), p.to.UTC().Format(time.RFC3339)))
	} else if p.matched == 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("none of the %d shadow predictions has its served prediction on the topic", p.requests))
	}
	var note string
	if rep.ScoreCorrelation, note = p.scores.pearson(); note != "" {
		rep.Notes = append(rep.Notes, note)
	}
	if p.spearmanN > 0 {
		rep.RankCorrelation = p.spearmanSum / float64(p.spearmanN)
	} else {
		rep.Notes = append(rep.Notes, "rank correlation undefined: no matched request has two items in common")
	}
	if p.overlapN > 0 {
		rep.TopKOverlap = p.overlapSum / float64(p.overlapN)
	} else {
		rep.Notes = append(rep.Notes, "top-10 overlap undefined: no matched request where both lists have items")
	}
	rep.LatencyP50Ms = quantile(p.latencies, 0.5)
	rep.LatencyP99Ms = quantile(p.latencies, 0.99)
	if p.requests > 0 {
		rep.ErrorRate = float64(p.errors) / float64(p.requests)
	}
}
