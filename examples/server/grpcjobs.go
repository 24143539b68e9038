package main

import (
	"context"
	"encoding/json"
	"log/slog"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// The gRPC side of the job queue: a service written by hand, with the
// protobuf well-known types for its messages, so that the example needs no
// .proto file and no generated code. In proto terms:
//
//	service graceful.example.Jobs {
//	  // {"count": N} enqueues N jobs with a null payload; {"payload": V}
//	  // enqueues one job with payload V. Answers {"ids": [...]}.
//	  rpc Enqueue(google.protobuf.Struct) returns (google.protobuf.Struct);
//	  // The same counts as GET /jobs/stats.
//	  rpc Stats(google.protobuf.Empty) returns (google.protobuf.Struct);
//	}
//
// A client calls it with grpc.ClientConn.Invoke and the method's full name,
// for example "/graceful.example.Jobs/Enqueue".
const jobsService = "graceful.example.Jobs"

// jobsServer implements the Jobs service.
type jobsServer struct {
	q   *queue
	log *slog.Logger
}

// jobsHandler is what RegisterService checks the server against.
type jobsHandler interface {
	enqueue(context.Context, *structpb.Struct) (*structpb.Struct, error)
	stats(context.Context, *emptypb.Empty) (*structpb.Struct, error)
}

var jobsDesc = grpc.ServiceDesc{
	ServiceName: jobsService,
	HandlerType: (*jobsHandler)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Enqueue", Handler: unary("Enqueue", newStruct, (*jobsServer).enqueue)},
		{MethodName: "Stats", Handler: unary("Stats", newEmpty, (*jobsServer).stats)},
	},
	Metadata: "examples/server/grpcjobs.go",
}

func newStruct() *structpb.Struct { return new(structpb.Struct) }
func newEmpty() *emptypb.Empty    { return new(emptypb.Empty) }

// unary adapts a method of jobsServer to grpc.MethodDesc's handler; newIn
// returns an empty request message.
func unary[In proto.Message, Out proto.Message](name string, newIn func() In,
	m func(*jobsServer, context.Context, In) (Out, error)) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
		in := newIn()
		if err := dec(in); err != nil {
			return nil, err
		}
		s := srv.(*jobsServer)
		if interceptor == nil {
			return m(s, ctx, in)
		}
		info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + jobsService + "/" + name}
		return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
			return m(s, ctx, req.(In))
		})
	}
}

func (s *jobsServer) enqueue(ctx context.Context, in *structpb.Struct) (*structpb.Struct, error) {
	var body []byte
	var err error
	f := in.GetFields()
	switch {
	case f["count"] != nil && f["payload"] == nil:
		body, err = json.Marshal(f["count"].AsInterface())
	case f["payload"] != nil && f["count"] == nil:
		body, err = f["payload"].MarshalJSON()
	default:
		return nil, status.Error(codes.InvalidArgument, `want {"count": N} or {"payload": V}`)
	}
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	payloads, err := enqueueRequest(body)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	ids, err := s.q.enqueue(ctx, payloads)
	if err != nil {
		s.log.Error("jobs: enqueue failed", "err", err)
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	s.log.Debug("jobs: enqueued", "jobs", len(ids), "via", "grpc")
	list := make([]any, len(ids))
	for i, id := range ids {
		list[i] = float64(id)
	}
	out, err := structpb.NewStruct(map[string]any{"ids": list})
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return out, nil
}

func (s *jobsServer) stats(ctx context.Context, _ *emptypb.Empty) (*structpb.Struct, error) {
	st, err := s.q.stats(ctx)
	if err != nil {
		s.log.Error("jobs: stats failed", "err", err)
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	out := new(structpb.Struct)
	if err := out.UnmarshalJSON(b); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return out, nil
}
