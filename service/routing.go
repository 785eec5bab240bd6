package service

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sipsvc/sipsvc/dn"
	routingv1 "github.com/sipsvc/sipsvc/gen/routing/v1"
	"github.com/sipsvc/sipsvc/signaling"
	"github.com/sipsvc/sipsvc/telemetry"
)

// Defaults of RoutingClientConfig.
const (
	DefaultRoutingTimeout = time.Second
	DefaultNotifyQueue    = 256
)

// RoutingClientConfig configures a RoutingClient. Address is required.
type RoutingClientConfig struct {
	// Address is the routing service's host:port (any grpc.NewClient target works).
	Address string
	// TLS dials with TLS, verifying the server with CAFile (or the system pool when empty).
	TLS    bool
	CAFile string
	// ServerName overrides the name verified in the server certificate.
	ServerName string
	// Timeout is the deadline of one RouteCall (the caller's ctx deadline still applies when
	// earlier); zero means DefaultRoutingTimeout.
	Timeout time.Duration
	// NotifyTimeout is the deadline of one NotifyLegDecision; zero means Timeout.
	NotifyTimeout time.Duration
	// NotifyQueue bounds the leg decisions waiting to be sent; when full, new ones are
	// dropped with a warning. Zero means DefaultNotifyQueue.
	NotifyQueue int
	// Logger; nil discards logs.
	Logger *slog.Logger
	// TracerProvider, MeterProvider and Propagators instrument the client (otelgrpc), so the
	// call's trace context reaches the routing service. nil: no traces or metrics, W3C trace
	// context + baggage.
	TracerProvider trace.TracerProvider
	MeterProvider  metric.MeterProvider
	Propagators    propagation.TextMapPropagator
	// DialOptions are appended to the client's options (tests, custom dialers).
	DialOptions []grpc.DialOption
}

// RoutingClient asks a routing.v1 RoutingService where calls go. It is a signaling.Router:
// errors (including deadline) are returned as errors so the B2BUA falls back. It is also a
// signaling.Observer: each originated leg's scheme decision is sent to the service with
// NotifyLegDecision, asynchronously and without ever blocking the caller.
type RoutingClient struct {
	addr          string
	timeout       time.Duration
	notifyTimeout time.Duration
	log           *slog.Logger
	conn          *grpc.ClientConn
	client        routingv1.RoutingServiceClient

	queue     chan *routingv1.NotifyLegDecisionRequest
	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

var (
	_ signaling.Router   = (*RoutingClient)(nil)
	_ signaling.Observer = (*RoutingClient)(nil)
)

// NewRoutingClient creates the client connection (lazily connected: an unreachable service
// shows up as RouteCall errors, not here) and starts the notification sender, which stops
// when ctx is cancelled or Close is called.
func NewRoutingClient(ctx context.Context, cfg RoutingClientConfig) (*RoutingClient, error) {
	if cfg.Address == "" {
		return nil, errors.New("service: RoutingClientConfig.Address is required")
	}
	c := &RoutingClient{
		addr:          cfg.Address,
		timeout:       cfg.Timeout,
		notifyTimeout: cfg.NotifyTimeout,
		log:           cfg.Logger,
	}
	if c.timeout <= 0 {
		c.timeout = DefaultRoutingTimeout
	}
	if c.notifyTimeout <= 0 {
		c.notifyTimeout = c.timeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	qn := cfg.NotifyQueue
	if qn <= 0 {
		qn = DefaultNotifyQueue
	}
	c.queue = make(chan *routingv1.NotifyLegDecisionRequest, qn)

	tp, mp, props := otelDefaults(cfg.TracerProvider, cfg.MeterProvider, cfg.Propagators)
	creds := insecure.NewCredentials()
	if cfg.TLS {
		tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: cfg.ServerName}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("service: read routing CA: %w", err)
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("service: routing CA %s: no PEM certificates", cfg.CAFile)
			}
		}
		creds = credentials.NewTLS(tc)
	}
	opts := append([]grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithStatsHandler(otelgrpc.NewClientHandler(
			otelgrpc.WithTracerProvider(tp), otelgrpc.WithMeterProvider(mp), otelgrpc.WithPropagators(props))),
	}, cfg.DialOptions...)
	conn, err := grpc.NewClient(cfg.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("service: routing client %s: %w", cfg.Address, err)
	}
	conn.Connect()
	c.conn = conn
	c.client = routingv1.NewRoutingServiceClient(conn)

	nctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	c.cancel = cancel
	c.wg.Add(2)
	go c.sendNotifications(nctx)
	go func() {
		defer c.wg.Done()
		select {
		case <-ctx.Done():
			cancel()
		case <-nctx.Done():
		}
	}()
	return c, nil
}

// Close stops the notification sender (queued notifications are dropped) and closes the
// connection.
func (c *RoutingClient) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		err = c.conn.Close()
	})
	return err
}

// Route calls RouteCall with a deadline of Timeout (or ctx's, when earlier) and maps the
// answer. A timeout error matches context.DeadlineExceeded with errors.Is; every error
// names the routing service.
func (c *RoutingClient) Route(ctx context.Context, req signaling.RouteRequest) (signaling.RouteDecision, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	resp, err := c.client.RouteCall(ctx, routeRequestToProto(req))
	if err != nil {
		return signaling.RouteDecision{}, c.rpcError("RouteCall", err)
	}
	d, err := routeDecisionFromProto(resp)
	if err != nil {
		return signaling.RouteDecision{}, fmt.Errorf("routing service %s: %w", c.addr, err)
	}
	return d, nil
}

// rpcError wraps a gRPC error; DEADLINE_EXCEEDED and CANCELED also wrap the context error.
func (c *RoutingClient) rpcError(method string, err error) error {
	switch status.Code(err) {
	case codes.DeadlineExceeded:
		return fmt.Errorf("routing service %s: %s: %w: %w", c.addr, method, context.DeadlineExceeded, err)
	case codes.Canceled:
		return fmt.Errorf("routing service %s: %s: %w: %w", c.addr, method, context.Canceled, err)
	}
	return fmt.Errorf("routing service %s: %s: %w", c.addr, method, err)
}

// Observe queues a NotifyLegDecision for the scheme decision of each leg sipsvc originates
// (every leg but the inbound "A" leg, whose decision RouteCall already carried). It never
// blocks: when the queue is full the notification is dropped with a warning.
func (c *RoutingClient) Observe(_ context.Context, ev signaling.Event) {
	if ev.Kind != signaling.EventLegSchemeDecided || ev.Decision == nil || !originated(ev) {
		return
	}
	n := &routingv1.NotifyLegDecisionRequest{
		CallId:    ev.CallID,
		SipCallId: ev.SIPCallID,
		Dn:        ev.DN,
		Decision:  legDecisionToRouting(*ev.Decision),
		Time:      timestamppb.New(ev.Time),
	}
	if ev.Time.IsZero() {
		n.Time = timestamppb.Now()
	}
	select {
	case c.queue <- n:
	default:
		c.log.Warn("routing notification queue full: leg decision dropped",
			"routing", c.addr, "call", ev.CallID, "leg", n.Decision.GetLegId())
	}
}

// inboundLeg is the id signaling gives the leg of an inbound call.
const inboundLeg = "A"

// originated reports whether an event concerns a leg sipsvc originated.
func originated(ev signaling.Event) bool {
	leg := ev.Leg
	if leg == "" {
		leg = ev.Decision.Leg
	}
	return leg != "" && leg != inboundLeg
}

func (c *RoutingClient) sendNotifications(ctx context.Context) {
	defer c.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case n := <-c.queue:
			rctx, cancel := context.WithTimeout(ctx, c.notifyTimeout)
			_, err := c.client.NotifyLegDecision(rctx, n)
			cancel()
			if err != nil && ctx.Err() == nil {
				c.log.Warn("routing notification failed", "routing", c.addr,
					"call", n.GetCallId(), "leg", n.GetDecision().GetLegId(), "error", err)
			}
		}
	}
}

func legDecisionToRouting(d signaling.LegDecision) *routingv1.LegDecision {
	return &routingv1.LegDecision{
		LegId:     d.Leg,
		Scheme:    d.Scheme,
		Transport: d.Transport,
		Secure:    d.Secure,
		Reason:    d.Reason,
		Rule:      d.Rule,
	}
}

func routeRequestToProto(r signaling.RouteRequest) *routingv1.RouteCallRequest {
	return &routingv1.RouteCallRequest{
		CallId:        r.CallID,
		SipCallId:     r.SIPCallID,
		Caller:        r.Caller,
		CallerDisplay: r.CallerDisplay,
		Dialed:        r.Dialed,
		RequestUri:    r.RequestURI,
		Headers:       r.Headers,
		Inbound:       legDecisionToRouting(r.Inbound),
		Source:        r.Source,
		CallerClass:   callerClasses[r.CallerClass],
		CallerDn:      r.CallerDN,
		CallerRule:    r.CallerRule,
	}
}

// callerClasses maps the caller class; a class not listed is sent as unspecified.
var callerClasses = map[signaling.CallerClass]routingv1.CallerClass{
	signaling.CallerAuthenticated: routingv1.CallerClass_CALLER_CLASS_AUTHENTICATED,
	signaling.CallerTrusted:       routingv1.CallerClass_CALLER_CLASS_TRUSTED,
	signaling.CallerAnonymous:     routingv1.CallerClass_CALLER_CLASS_ANONYMOUS,
}

var routingPolicies = map[routingv1.SipsPolicy]dn.Policy{
	routingv1.SipsPolicy_SIPS_POLICY_UNSPECIFIED: dn.PolicyDefault,
	routingv1.SipsPolicy_SIPS_POLICY_PER_LEG:     dn.PolicyPerLeg,
	routingv1.SipsPolicy_SIPS_POLICY_STRICT:      dn.PolicyStrict,
}

// routeDecisionFromProto maps and checks a RouteCallResponse. Anything unusable (no
// decision, no targets, a bad DN or URI, a status outside 400-699) is an error, so the
// B2BUA falls back instead of acting on half a decision.
func routeDecisionFromProto(resp *routingv1.RouteCallResponse) (signaling.RouteDecision, error) {
	d := signaling.RouteDecision{Source: "routing-service"}
	switch x := resp.GetDecision().(type) {
	case *routingv1.RouteCallResponse_Reject:
		st := x.Reject.GetSipStatus()
		if st < 400 || st > 699 {
			return d, fmt.Errorf("reject.sip_status %d is not a SIP final error status (400-699)", st)
		}
		if err := dn.CheckText(x.Reject.GetReason()); err != nil {
			return d, fmt.Errorf("reject.reason: %q %w", x.Reject.GetReason(), err)
		}
		d.Reject = &signaling.Rejection{Status: int(st), Reason: x.Reject.GetReason()}
		return d, nil
	case *routingv1.RouteCallResponse_Targets:
		ts := x.Targets.GetTargets()
		if len(ts) == 0 {
			return d, errors.New("empty target list")
		}
		for i, t := range ts {
			var out signaling.Target
			switch dest := t.GetDestination().(type) {
			case *routingv1.Target_Dn:
				if !dn.ValidNumber(dest.Dn) {
					return d, fmt.Errorf("targets[%d].dn: %q is not a DN number", i, dest.Dn)
				}
				out.DN = dest.Dn
			case *routingv1.Target_Uri:
				if _, err := dn.ParseContact(dest.Uri); err != nil {
					return d, fmt.Errorf("targets[%d].uri: %w", i, err)
				}
				out.URI = dest.Uri
			default:
				return d, fmt.Errorf("targets[%d]: neither dn nor uri set", i)
			}
			if to := t.GetTimeout(); to != nil {
				if err := to.CheckValid(); err != nil || to.AsDuration() < 0 {
					return d, fmt.Errorf("targets[%d].timeout: invalid duration", i)
				}
				out.Timeout = to.AsDuration()
			}
			p, ok := routingPolicies[t.GetPolicy()]
			if !ok {
				return d, fmt.Errorf("targets[%d].policy: unknown value %d", i, t.GetPolicy())
			}
			out.Policy = p
			d.Targets = append(d.Targets, out)
		}
		return d, nil
	}
	return d, errors.New("response has neither targets nor reject")
}

// otelDefaults fills in what the caller left nil: no-op tracer and meter providers, and the
// W3C propagators that telemetry.Setup installs.
func otelDefaults(tp trace.TracerProvider, mp metric.MeterProvider, props propagation.TextMapPropagator) (trace.TracerProvider, metric.MeterProvider, propagation.TextMapPropagator) {
	if tp == nil {
		tp = tracenoop.NewTracerProvider()
	}
	if mp == nil {
		mp = metricnoop.NewMeterProvider()
	}
	if props == nil {
		props = telemetry.Propagator()
	}
	return tp, mp, props
}
