package grpccomponent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/graceful-go/graceful/internal/servertest"
)

const callMethod = "/servertest.Test/Call"

// callDesc is a service of one unary method that runs the Config's handler.
var callDesc = grpc.ServiceDesc{
	ServiceName: "servertest.Test",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Call",
		Handler: func(srv any, ctx context.Context, dec func(any) error, icpt grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			h := func(ctx context.Context, _ any) (any, error) {
				if fn := srv.(*callService).handler; fn != nil {
					fn(ctx)
				}
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				return wrapperspb.String("done"), nil
			}
			return icpt(ctx, in, &grpc.UnaryServerInfo{Server: srv, FullMethod: callMethod}, h)
		},
	}},
}

type callService struct{ handler func(context.Context) }

// TestServerTable runs the table of behaviours that httpcomponent passes too.
func TestServerTable(t *testing.T) {
	servertest.Run(t, servertest.Factory{
		New: func(t *testing.T, c servertest.Config) servertest.Server {
			opts := []Option{WithListener(c.Listener)}
			if c.WithHealth {
				opts = append(opts, WithHealth(c.Health))
			}
			if c.WithTLS {
				opts = append(opts, WithTLS(c.TLS))
			}
			s := New(c.Addr, opts...)
			s.GRPC().RegisterService(&callDesc, &callService{handler: c.Handler})
			return s
		},
		Call: func(ctx context.Context, addr net.Addr, roots *x509.CertPool) error {
			creds := insecure.NewCredentials()
			if roots != nil {
				creds = credentials.NewTLS(&tls.Config{RootCAs: roots})
			}
			cc, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(creds))
			if err != nil {
				return err
			}
			defer cc.Close()
			out := new(wrapperspb.StringValue)
			if err := cc.Invoke(ctx, callMethod, wrapperspb.String("call"), out); err != nil {
				return err
			}
			if out.GetValue() != "done" {
				return status.Errorf(codes.Internal, "answered %q", out.GetValue())
			}
			return nil
		},
		Health: func(ctx context.Context, addr net.Addr) (servertest.Health, error) {
			cc, err := grpc.NewClient(addr.String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return 0, err
			}
			defer cc.Close()
			resp, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
			switch {
			case status.Code(err) == codes.Unimplemented:
				return servertest.HealthAbsent, nil
			case err != nil:
				return 0, err
			case resp.GetStatus() == healthpb.HealthCheckResponse_SERVING:
				return servertest.HealthServing, nil
			case resp.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING:
				return servertest.HealthNotServing, nil
			}
			return 0, status.Errorf(codes.Internal, "health %v", resp.GetStatus())
		},
		Prefix: "grpccomponent: ",
		Cut:    "1 RPC(s)",
	})
}
