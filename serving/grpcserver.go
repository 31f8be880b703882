package serving

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	adaptrecv1 "github.com/adaptrec/adaptrec/gen/adaptrec/v1"
)

var rpcDuration = promauto.NewHistogramVec(prometheus.HistogramOpts{
	Name:    "adaptrec_grpc_server_handling_seconds",
	Help:    "Time to handle a gRPC call, by method and status code.",
	Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
}, []string{"method", "code"})

func observeUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	rpcDuration.WithLabelValues(info.FullMethod, status.Code(err).String()).Observe(time.Since(start).Seconds())
	return resp, err
}

// NewGRPCServer returns a gRPC server exposing svc, the standard health
// service (serving once registered) and reflection, so grpcurl works.
func NewGRPCServer(svc adaptrecv1.RecommendServiceServer, opts ...grpc.ServerOption) (*grpc.Server, *health.Server) {
	opts = append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(observeUnary),
		grpc.MaxRecvMsgSize(8 << 20),
	}, opts...)
	srv := grpc.NewServer(opts...)
	adaptrecv1.RegisterRecommendServiceServer(srv, svc)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(adaptrecv1.RecommendService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv, hs
}
