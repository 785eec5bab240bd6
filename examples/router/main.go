// Command router is an example routing service for sipsvc: a gRPC server implementing
// routing.v1.RoutingService that routes calls by a table of dialed-number prefixes and
// prints the scheme decision of every leg sipsvc originates.
//
// Usage:
//
//	go run ./examples/router -listen 127.0.0.1:9191 -table examples/router/routes.yaml
//	go run ./examples/router -route 1=${dialed} -route 9=sips:${dialed}@trunk.example.com -reject 666=403:Forbidden
//
// and point sipsvc at it (routing.address: 127.0.0.1:9191, or SIPSVC_ROUTING_ADDRESS).
// See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	routingv1 "github.com/sipsvc/sipsvc/gen/routing/v1"
)

// server implements routing.v1.RoutingService on a Table.
type server struct {
	routingv1.UnimplementedRoutingServiceServer
	table Table
	log   *slog.Logger
}

var _ routingv1.RoutingServiceServer = (*server)(nil)

// RouteCall answers from the table.
func (s *server) RouteCall(ctx context.Context, req *routingv1.RouteCallRequest) (*routingv1.RouteCallResponse, error) {
	resp := s.table.Decide(req.GetDialed())
	in := req.GetInbound()
	attrs := []any{"call", req.GetCallId(), "caller", req.GetCaller(), "dialed", req.GetDialed(),
		"inbound", fmt.Sprintf("%s/%s secure=%t (%s: %s)", in.GetScheme(), in.GetTransport(), in.GetSecure(), in.GetRule(), in.GetReason())}
	if rj := resp.GetReject(); rj != nil {
		s.log.InfoContext(ctx, "route: reject", append(attrs, "status", rj.GetSipStatus(), "reason", rj.GetReason())...)
	} else {
		var ts []string
		for _, t := range resp.GetTargets().GetTargets() {
			ts = append(ts, t.GetDn()+t.GetUri())
		}
		s.log.InfoContext(ctx, "route: targets", append(attrs, "targets", strings.Join(ts, ","))...)
	}
	return resp, nil
}

// NotifyLegDecision prints the scheme decision of a leg sipsvc originated.
func (s *server) NotifyLegDecision(ctx context.Context, req *routingv1.NotifyLegDecisionRequest) (*routingv1.NotifyLegDecisionResponse, error) {
	d := req.GetDecision()
	s.log.InfoContext(ctx, "leg scheme decided",
		"call", req.GetCallId(), "leg", d.GetLegId(), "dn", req.GetDn(),
		"scheme", d.GetScheme(), "transport", d.GetTransport(), "secure", d.GetSecure(),
		"reason", d.GetReason(), "rule", d.GetRule())
	return &routingv1.NotifyLegDecisionResponse{}, nil
}

// multiFlag collects a repeatable flag.
type multiFlag []string

// String returns the values given.
func (m *multiFlag) String() string { return strings.Join(*m, " ") }

// Set adds one value.
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "router:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("router", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:9191", "gRPC listen address")
	tablePath := fs.String("table", "", "YAML routing table (see routes.yaml)")
	var routes, rejects multiFlag
	fs.Var(&routes, "route", "prefix=target[,target…] (repeatable; a target with ':' is a URI; ${dialed} is the dialed number)")
	fs.Var(&rejects, "reject", "prefix=status[:reason] (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))

	var table Table
	if *tablePath != "" {
		f, err := os.Open(*tablePath)
		if err != nil {
			return err
		}
		table, err = ParseTable(f)
		f.Close()
		if err != nil {
			return err
		}
	}
	for _, v := range routes {
		r, err := routeFlag(v)
		if err != nil {
			return err
		}
		table.Routes = append(table.Routes, r)
	}
	for _, v := range rejects {
		r, err := rejectFlag(v)
		if err != nil {
			return err
		}
		table.Routes = append(table.Routes, r)
	}
	if err := table.Validate(); err != nil {
		return err
	}
	if len(table.Routes) == 0 && table.Default == nil {
		return errors.New("empty routing table: give -table or -route/-reject")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	l, err := new(net.ListenConfig).Listen(ctx, "tcp", *listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", *listen, err)
	}
	return serve(ctx, l, table, log)
}

// serve runs the routing service on l until ctx is cancelled.
func serve(ctx context.Context, l net.Listener, table Table, log *slog.Logger) error {
	srv := grpc.NewServer()
	routingv1.RegisterRoutingServiceServer(srv, &server{table: table, log: log})
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	log.Info("routing service listening", "addr", l.Addr().String())
	fmt.Print(table.String())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		hs.Shutdown()
		srv.GracefulStop()
		return <-errc
	}
}
