package serving

import (
	"context"
	"fmt"
	"math"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

func TestCanaryHashIsStableAndUniform(t *testing.T) {
	// Fixed values: every serving instance, of every release, must route a
	// user to the same arm.
	if h := canaryHash("user0000042"); math.Abs(h-canaryHash("user0000042")) != 0 || h < 0 || h >= 1 {
		t.Fatalf("canaryHash not stable or out of [0,1): %v", h)
	}
	const n = 100_000
	var buckets [10]int
	for i := range n {
		buckets[int(canaryHash(fmt.Sprintf("user%07d", i))*10)]++
	}
	for b, c := range buckets {
		if c < n/10*95/100 || c > n/10*105/100 {
			t.Errorf("decile %d holds %d of %d sequential user ids, want %d ± 5%%", b, c, n, n/10)
		}
	}
}

func TestRouteSendsTheCanaryShareToTheCanary(t *testing.T) {
	prod, canary := &binding{m: &Model{Version: "p"}}, &binding{m: &Model{Version: "c"}}
	v := &view{prod: prod, canary: canary, canaryWeight: 0.25}
	got := 0
	const n = 40_000
	for i := range n {
		user := fmt.Sprintf("u%d", i)
		b, arm := v.route(user)
		if (b == canary) != (arm == ArmCanary) {
			t.Fatalf("route(%s) = %s with arm %s", user, b.m.Version, arm)
		}
		if b2, _ := v.route(user); b2 != b {
			t.Fatalf("route(%s) not stable", user)
		}
		if b == canary {
			got++
		}
	}
	if share := float64(got) / n; math.Abs(share-0.25) > 0.01 {
		t.Errorf("canary share %.3f, want 0.25 ± 0.01", share)
	}
	v.canaryWeight = 0
	if b, arm := v.route("u1"); b != prod || arm != ArmProduction {
		t.Errorf("weight 0 routed to %s", arm)
	}
	v.canaryWeight, v.canary = 1, nil
	if b, _ := v.route("u1"); b != prod {
		t.Error("a canary weight without a loaded canary must route to production")
	}
}

func TestResponseCache(t *testing.T) {
	c := newResponseCache(4, time.Minute)
	now := time.Unix(1000, 0)
	items := []*adaptrecv1.ScoredItem{{ItemId: "a"}}
	c.put("u1", items, "v1", now)
	if got, ok := c.get("u1", now.Add(30*time.Second)); !ok || got.version != "v1" {
		t.Fatalf("get after put = %v, %v", got, ok)
	}
	if _, ok := c.get("u1", now.Add(2*time.Minute)); ok {
		t.Error("an entry older than the ttl was served")
	}
	if _, ok := c.get("nobody", now); ok {
		t.Error("a user never cached got a response")
	}
	// Users colliding in a slot never get each other's lists.
	for i := range 64 {
		c.put(fmt.Sprintf("x%d", i), []*adaptrecv1.ScoredItem{{ItemId: fmt.Sprint(i)}}, "v", now)
	}
	for i := range 64 {
		if got, ok := c.get(fmt.Sprintf("x%d", i), now); ok && got.items[0].ItemId != fmt.Sprint(i) {
			t.Fatalf("user x%d got user %s's response", i, got.items[0].ItemId)
		}
	}
	var nilCache *responseCache
	nilCache.put("u", items, "v", now)
	if _, ok := nilCache.get("u", now); ok {
		t.Error("a nil cache answered")
	}
}

func TestTokenAuth(t *testing.T) {
	auth := tokenAuth([]string{"0123456789abcdef-good"})
	ok := func(context.Context, any) (any, error) { return "ok", nil }
	recommend := &grpc.UnaryServerInfo{FullMethod: "/" + adaptrecv1.RecommendService_ServiceDesc.ServiceName + "/Recommend"}
	health := &grpc.UnaryServerInfo{FullMethod: "/grpc.health.v1.Health/Check"}
	call := func(info *grpc.UnaryServerInfo, md ...string) codes.Code {
		ctx := context.Background()
		if len(md) > 0 {
			ctx = metadata.NewIncomingContext(ctx, metadata.Pairs(md...))
		}
		_, err := auth(ctx, nil, info, ok)
		return status.Code(err)
	}
	for _, tt := range []struct {
		name string
		info *grpc.UnaryServerInfo
		md   []string
		want codes.Code
	}{
		{"good token", recommend, []string{"authorization", "Bearer 0123456789abcdef-good"}, codes.OK},
		{"no metadata", recommend, nil, codes.Unauthenticated},
		{"wrong token", recommend, []string{"authorization", "Bearer 0123456789abcdef-bad!"}, codes.Unauthenticated},
		{"not bearer", recommend, []string{"authorization", "Basic 0123456789abcdef-good"}, codes.Unauthenticated},
		{"health needs none", health, nil, codes.OK},
	} {
		if got := call(tt.info, tt.md...); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
}
