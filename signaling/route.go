package signaling

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/sipsvc/sipsvc/dn"
	sc "github.com/sipsvc/sipsvc/telemetry/sipconv"
)

// BuiltinRouter routes the dialed user part to the DN with that number. It is the router of
// the embedded default and the last fallback when the routing service fails.
type BuiltinRouter struct {
	Directory Directory
}

var _ Router = BuiltinRouter{}

// Route returns the DN whose number is the dialed user, or a 404 rejection.
func (b BuiltinRouter) Route(ctx context.Context, req RouteRequest) (RouteDecision, error) {
	if req.Dialed == "" {
		return RouteDecision{Reject: &Rejection{Status: 404, Reason: "Not Found"}, Source: "builtin"}, nil
	}
	if _, err := b.Directory.Lookup(ctx, req.Dialed); err != nil {
		if errors.Is(err, dn.ErrNotFound) {
			return RouteDecision{Reject: &Rejection{Status: 404, Reason: "Not Found"}, Source: "builtin"}, nil
		}
		return RouteDecision{}, fmt.Errorf("builtin route %s: %w", req.Dialed, err)
	}
	return RouteDecision{Targets: []Target{{DN: req.Dialed}}, Source: "builtin"}, nil
}

// route asks the router with a deadline and falls back when it fails: the configured
// fallback DNs, then the built-in router, then 503 with Retry-After. It never hangs.
func (s *Server) route(ctx context.Context, c *call, rr RouteRequest) (d RouteDecision) {
	ctx, span := s.startRouteSpan(ctx, c)
	var outcome string // the first routing outcome (routed, rejected, error, timeout, builtin…)
	defer func() {
		if span.IsRecording() {
			span.SetAttributes(sc.AttrRoutingSource.String(d.Source), sc.AttrRoutingTargets.Int(len(d.Targets)), sc.AttrRoutingOutcome.String(outcome))
			if d.Reject != nil {
				span.SetAttributes(sc.AttrSIPStatusCode.Int(d.Reject.Status))
			}
		}
		span.End()
	}()
	builtin := BuiltinRouter{Directory: s.cfg.Directory}
	if s.cfg.Router == nil {
		start := time.Now()
		d, err := builtin.Route(ctx, rr)
		if err != nil {
			outcome = "unavailable"
			s.routingDone(start, outcome)
			return RouteDecision{Reject: &Rejection{Status: 503, Reason: "Service Unavailable"}, Source: "builtin"}
		}
		outcome = outcomeOf(d, "builtin")
		s.routingDone(start, outcome)
		return d
	}
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, s.cfg.RoutingTimeout)
	d, err := s.cfg.Router.Route(rctx, rr)
	cancel()
	if err != nil {
		span.RecordError(err)
	}
	if err == nil && (d.Reject != nil || len(d.Targets) > 0) {
		if d.Source == "" {
			d.Source = "routing-service"
		}
		outcome = outcomeOf(d, "routed")
		s.routingDone(start, outcome)
		return d
	}
	if err == nil {
		err = errors.New("routing service returned no target and no rejection")
	}
	outcome = "error"
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(rctx.Err(), context.DeadlineExceeded) {
		outcome = "timeout"
	}
	s.routingDone(start, outcome)
	c.log(slog.LevelWarn, "routing service failed, falling back", "error", err)
	var fb RouteDecision
	fb.Source = "fallback"
	for _, n := range s.cfg.FallbackDNs {
		fb.Targets = append(fb.Targets, Target{DN: n})
	}
	if bd, berr := builtin.Route(ctx, rr); berr == nil && len(bd.Targets) > 0 {
		fb.Targets = append(fb.Targets, bd.Targets...)
		if len(s.cfg.FallbackDNs) == 0 {
			fb.Source = "builtin"
		}
	}
	cause := fmt.Sprintf("routing %s: %v", outcome, err)
	if len(fb.Targets) == 0 {
		fb = RouteDecision{Reject: &Rejection{Status: 503, Reason: "Service Unavailable"}, Source: "unavailable"}
		cause += "; no fallback: 503"
	} else {
		cause += "; fallback via " + fb.Source
	}
	s.routingDone(time.Now(), "fallback_"+fb.Source)
	span.AddEvent(sc.EventRoutingFallback, trace.WithAttributes(sc.AttrRoutingOutcome.String(outcome), sc.AttrErrorType.String(outcome)))
	c.span.AddEvent(sc.EventRoutingFallback, trace.WithAttributes(sc.AttrRoutingOutcome.String(outcome)))
	c.event(EventRoutingFallback, nil, func(e *Event) { e.Cause, e.FallbackReason = cause, outcome })
	return fb
}

func outcomeOf(d RouteDecision, ok string) string {
	if d.Reject != nil {
		return "rejected"
	}
	return ok
}

func (s *Server) routingDone(start time.Time, outcome string) {
	if s.cfg.Metrics != nil {
		s.cfg.Metrics.RoutingDone(time.Since(start), outcome)
	}
}
