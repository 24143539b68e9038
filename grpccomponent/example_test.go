package grpccomponent_test

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/graceful-go/graceful/grpccomponent"
	"github.com/graceful-go/graceful/lifecycle"
)

// A gRPC server in a Group: health turns SERVING once the whole Group runs,
// and NOT_SERVING as soon as the shutdown begins, while the server keeps
// serving for the drain delay; then it stops gracefully within the budget.
func Example() {
	g := lifecycle.New(
		lifecycle.WithShutdownTimeout(10*time.Second),
		lifecycle.WithDrainDelay(100*time.Millisecond), // seconds in production
		lifecycle.WithLogger(nil),                      // quiet for the example
	)
	srv := grpccomponent.New("127.0.0.1:0", grpccomponent.WithHealth(g))
	// Register the services here, e.g. pb.RegisterGreeterServer(srv.GRPC(), greeter{}).
	g.Add("grpc", srv)

	ctx, shutdown := context.WithCancel(context.Background())
	defer shutdown()
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }() // in main: os.Exit(lifecycle.ExitCode(g.Run(ctx)))
	<-g.Ready()

	// A client that watches the server's health, as a load balancer would.
	cc, err := grpc.NewClient(srv.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()
	watch, err := healthpb.NewHealthClient(cc).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		fmt.Println(err)
		return
	}
	for want := healthpb.HealthCheckResponse_SERVING; ; {
		resp, err := watch.Recv()
		if err != nil {
			fmt.Println(err)
			return
		}
		if resp.GetStatus() != want {
			continue
		}
		fmt.Println(resp.GetStatus())
		if want == healthpb.HealthCheckResponse_NOT_SERVING {
			break
		}
		shutdown() // as SIGTERM would
		want = healthpb.HealthCheckResponse_NOT_SERVING
	}
	fmt.Println("Run:", <-done)
	// Output:
	// SERVING
	// NOT_SERVING
	// Run: <nil>
}
