package servingworld

import (
	"math"
	"strconv"
	"time"

	"github.com/adaptrec/adaptrec/features"
	"github.com/adaptrec/adaptrec/features/online"
)

// smooth is the definitions' smoothed rate: (successes + 100·prior) /
// (trials + 100).
func smooth(successes, trials, prior float64) float64 {
	return (min(successes, trials) + 100*prior) / (trials + 100)
}

// itemValue appends item i's value of a fixed-width item feature f. The
// catalogue attributes, popularity and rates follow the item's hidden
// attributes; a feature this world knows nothing of gets a plausible value
// from a hash (plausible).
func (g *gen) itemValue(f *features.Feature, i int, dst []float64) []float64 {
	h := hash(g.seed, uint64(i), uint64(f.ID), 0x17e)
	noise := func(sigma float64) float64 { return math.Exp(sigma * normal(h)) }
	clicks := float64(g.clicks[i])
	trueCTR := 0.03 * float64(g.quality[i])
	impressions := math.Round(clicks / min(trueCTR, 0.5))
	watchRate := min(0.95, 0.5*math.Pow(float64(g.quality[i]), 0.3))
	fraction := min(1, 0.45*math.Pow(float64(g.quality[i]), 0.2))
	purchase := 0.002
	if g.price[i] > 0 {
		purchase = 0.01 * float64(g.quality[i])
	}
	var v float64
	switch f.Name {
	case "item_category_id":
		v = float64(g.cat[i])
	case "item_creator_id":
		v = float64(g.creator[i])
	case "item_age_hours":
		v = float64(g.age[i])
	case "item_is_flagged":
		v = b2f(g.flagged[i])
	case "item_is_promoted":
		v = b2f(g.promoted[i])
	case "item_duration_s":
		v = float64(g.duration[i])
	case "item_price":
		v = float64(g.price[i])
	case "item_clicks_7d":
		v = clicks
	case "item_impressions_7d":
		v = impressions
	case "item_impressions_1d":
		v = math.Round(impressions / 7 * noise(0.3))
	case "item_ctr_7d":
		v = smooth(clicks, impressions, 0.03)
	case "item_ctr_1d":
		v = smooth(math.Round(clicks/7*noise(0.3)), math.Round(impressions/7), 0.03)
	case "item_ctr_30d":
		v = smooth(clicks*4*noise(0.1), impressions*4, 0.03)
	case "item_ctr_position_adjusted_7d":
		// Clicks over the clicks expected at the global CTR, smoothed
		// towards 1 by 100 expected clicks.
		v = (clicks + 100) / (impressions*0.03 + 100)
	case "item_unique_viewers_7d":
		v = math.Round(clicks * 1.05)
	case "item_browse_views_7d":
		v = math.Round(clicks * 0.2 * noise(0.3))
	case "item_watch_rate_7d":
		v = smooth(clicks*watchRate, clicks, 0.5)
	case "item_completion_rate_7d":
		v = smooth(clicks*watchRate*fraction*0.6, clicks*watchRate, 0.3)
	case "item_watch_seconds_mean_7d":
		if clicks > 0 {
			v = float64(g.duration[i]) * fraction
		}
	case "item_watch_fraction_mean_7d":
		if clicks > 0 {
			v = fraction
		}
	case "item_skip_rate_7d":
		v = smooth(impressions*0.1/math.Sqrt(float64(g.quality[i])), impressions, 0.1)
	case "item_purchase_rate_30d":
		v = smooth(clicks*4*purchase, clicks*4, 0.01)
	case "item_revenue_7d":
		v = math.Round(clicks*purchase*float64(g.price[i])*100) / 100
	case "item_creator_ctr_30d":
		v = 0.03 * float64(g.creatorQuality[g.creator[i]])
	case "item_creator_items":
		v = float64(g.creatorItems[g.creator[i]])
	case "item_category_ctr_7d":
		v = float64(g.catCTR[g.cat[i]])
	case "item_embedding":
		return appendEmbedding(dst, g.centroids16[g.cat[i]], f.Type.Dim, h)
	default:
		return appendPlausible(dst, f, h)
	}
	return append(dst, v)
}

// userValue appends user u's value of a fixed-width user batch feature f.
func (g *gen) userValue(f *features.Feature, u int, dst []float64) []float64 {
	h := hash(g.seed, uint64(u), uint64(f.ID), 0x05e)
	act := float64(g.activity[u])
	impressions := math.Round(300 * act)
	clicks := math.Round(impressions * float64(g.userCTR[u]))
	activeDays := min(30, max(1, math.Round(6*math.Pow(act, 0.7))))
	var v float64
	switch f.Name {
	case "user_category_affinity":
		for _, x := range g.affinity(u) {
			dst = append(dst, float64(x))
		}
		return dst
	case "user_hour_profile":
		return appendHourProfile(dst, int(g.peakHour[u]), f.Type.Dim)
	case "user_device_share":
		for d := range f.Type.Dim {
			share := 0.1 / float64(f.Type.Dim-1)
			if d == int(g.device[u]) {
				share = 0.9
			}
			dst = append(dst, share)
		}
		return dst
	case "user_embedding":
		c := make([]float32, f.Type.Dim)
		for j, k := range g.fav[u] {
			for d := range c {
				if d < len(g.centroids16[k]) {
					c[d] += g.favW[u][j] * g.centroids16[k][d]
				}
			}
		}
		return appendEmbedding(dst, c, f.Type.Dim, h)
	case "user_impressions_30d":
		v = impressions
	case "user_clicks_30d":
		v = clicks
	case "user_ctr_30d":
		v = smooth(clicks, impressions, 0.03)
	case "user_purchases_30d":
		v = math.Round(clicks * 0.02)
	case "user_spend_30d":
		v = math.Round(clicks*0.02) * 12.5
	case "user_watch_seconds_30d":
		v = math.Round(clicks * 0.5 * 420)
	case "user_completion_rate_30d":
		v = smooth(clicks*0.5*0.35, clicks*0.5, 0.3)
	case "user_skip_rate_30d":
		v = smooth(impressions*0.08, impressions, 0.1)
	case "user_active_days_30d":
		v = activeDays
	case "user_sessions_30d":
		v = math.Round(activeDays * 1.6)
	case "user_avg_session_length_s":
		v = math.Round(600 * math.Exp(0.5*normal(h)))
	case "user_tenure_days":
		v = float64(1 + hash(h)%1500)
	default:
		return appendPlausible(dst, f, h)
	}
	return append(dst, v)
}

// userMap returns user u's value of a user map feature: clicks per creator
// of the items the user engaged with for user_creator_clicks_30d, else an
// empty map.
func (g *gen) userMap(f *features.Feature, u int) map[string]float64 {
	if f.Name != "user_creator_clicks_30d" {
		return nil
	}
	m := map[string]float64{}
	for _, i := range g.pairs[u] {
		m[strconv.Itoa(int(g.creator[i]))]++
	}
	for _, i := range g.session[u] {
		m[strconv.Itoa(int(g.creator[i]))]++
	}
	return m
}

// pairValue appends the value of a fixed-width user×item batch feature of
// user u and item i, one of the user's pairs.
func (g *gen) pairValue(f *features.Feature, u int, i int32, dst []float64) []float64 {
	h := hash(g.seed, uint64(u), uint64(i), uint64(f.ID), 0x9a1)
	var v float64
	switch f.Name {
	case "ui_clicked_30d":
		v = b2f(unit(hash(g.seed, uint64(u), uint64(i), 0xc11)) < 0.4)
	case "ui_impressions_7d":
		v = float64(1 + hash(h)%6)
	case "ui_category_ctr_30d":
		v = smooth(20*float64(g.userCTR[u])*1.8, 20, float64(g.userCTR[u]))
	case "ui_creator_affinity_30d":
		same := 0
		for _, j := range g.pairs[u] {
			if g.creator[j] == g.creator[i] {
				same++
			}
		}
		v = float64(same) / float64(max(len(g.pairs[u]), 1))
	default:
		return appendPlausible(dst, f, h)
	}
	return append(dst, v)
}

// itemNearline returns active item i's nearline values as of now: an
// hour of clicks at the item's weekly rate times its trending velocity.
func (g *gen) itemNearline(i int, now time.Time) []online.NearlineValue {
	clicksHour := math.Round(float64(g.clicks[i]) / 168 * float64(g.velocity[i]))
	impHour := math.Round(clicksHour / min(0.03*float64(g.quality[i]), 0.5))
	var out []online.NearlineValue
	for _, f := range g.fs.Entity(features.EntityItem) {
		if f.Lane != features.LaneNearline {
			continue
		}
		v := online.NearlineValue{Feature: f.Name, At: now}
		switch f.Name {
		case "item_clicks_1h":
			v.Value.Int = int64(clicksHour)
		case "item_impressions_1h":
			v.Value.Int = int64(impHour)
		case "item_ctr_1h":
			v.Value.Float = float32(smooth(clicksHour, impHour, 0.03))
		case "item_trending_velocity_30m":
			v.Value.Float = g.velocity[i]
		default:
			if !plausibleNearline(&v, f, hash(g.seed, uint64(i), uint64(f.ID), 0x1a)) {
				continue
			}
		}
		out = append(out, v)
	}
	return out
}

// userNearline returns the nearline values of user u, who is in a session,
// as of now: the session's recent items, counts and times.
func (g *gen) userNearline(u int, now time.Time) []online.NearlineValue {
	s := g.session[u]
	h := hash(g.seed, uint64(u), 0x5e55)
	var out []online.NearlineValue
	for _, f := range g.fs.Entity(features.EntityUser) {
		if f.Lane != features.LaneNearline {
			continue
		}
		v := online.NearlineValue{Feature: f.Name, At: now}
		switch f.Name {
		case features.FeatureSessionKey:
			v.Value.Int = features.SessionKey(sessionID(g.userIDs[u]))
		case features.FeatureSessionStartMs:
			v.Value.Int = now.Add(-g.sessionStart[u]).UnixMilli()
		case features.FeatureSessionInteractions:
			v.Value.Int = int64(2 * len(s))
		case "user_session_clicks":
			v.Value.Int = int64(len(s))
		case features.FeatureLastInteractionMs:
			v.Value.Int = now.Add(-time.Duration(5+h%55) * time.Second).UnixMilli()
		case "user_session_recent_items":
			v.Value.List = make([]string, len(s))
			for j, i := range s {
				v.Value.List[j] = g.itemIDs[i]
			}
		case "user_clicks_1h":
			v.Value.Int = int64(len(s)) + int64(h%4)
		case "user_purchases_1h":
			v.Value.Int = int64(b2f(h%20 == 0))
		default:
			if !plausibleNearline(&v, f, h) {
				continue
			}
		}
		out = append(out, v)
	}
	return out
}

// appendEmbedding appends a dim-wide vector near the direction c.
func appendEmbedding(dst []float64, c []float32, dim int, h uint64) []float64 {
	for d := range dim {
		x := 0.35 * normal(hash(h, uint64(d)))
		if d < len(c) {
			x += float64(c[d])
		}
		dst = append(dst, x)
	}
	return dst
}

// appendHourProfile appends shares of activity per hour peaking at peak.
func appendHourProfile(dst []float64, peak, dim int) []float64 {
	w := make([]float64, dim)
	for hr := range w {
		d := float64(min((hr-peak+dim)%dim, (peak-hr+dim)%dim))
		w[hr] = math.Exp(-d * d / 8)
	}
	normalize(w)
	return append(dst, w...)
}

// appendPlausible appends a plausible value of f from a hash: rates near
// their prior, counts and ids as small integers, vector components around
// zero. It stands in for features this world gives no meaning to.
func appendPlausible(dst []float64, f *features.Feature, h uint64) []float64 {
	u := unit(h)
	switch f.Type.Kind {
	case features.KindInt:
		return append(dst, float64(h%100))
	case features.KindVector:
		for c := range f.Type.Dim {
			dst = append(dst, 0.5*normal(hash(h, uint64(c))))
		}
		return dst
	}
	if d := float64(f.Default.Float); d > 0 && d <= 1 {
		return append(dst, min(1, 2*d*u))
	}
	return append(dst, math.Round(1000*u*u))
}

// plausibleNearline sets a plausible nearline value of f; false for a kind
// the world writes none of (maps).
func plausibleNearline(v *online.NearlineValue, f *features.Feature, h uint64) bool {
	switch f.Type.Kind {
	case features.KindInt:
		v.Value.Int = int64(h % 10)
	case features.KindFloat:
		v.Value.Float = float32(appendPlausible(nil, f, h)[0])
	case features.KindVector:
		v.Value.Vector = make([]float32, f.Type.Dim)
		for c, x := range appendPlausible(nil, f, h) {
			v.Value.Vector[c] = float32(x)
		}
	default:
		return false
	}
	return true
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
