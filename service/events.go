package service

import (
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
)

// streamOpenHeader is the response header WatchEvents sends once the request is valid and
// the subscription exists.
const streamOpenHeader = "sipsvc-stream-open"

// eventServer implements EventService on a Hub.
type eventServer struct {
	sipsvcv1.UnimplementedEventServiceServer
	hub   *Hub
	enums *enumTables
	// stopping is closed when the API shuts down: streams end with UNAVAILABLE.
	stopping <-chan struct{}
}

var _ sipsvcv1.EventServiceServer = (*eventServer)(nil)

// WatchEvents subscribes to the Hub with the request's filter and streams until the
// client leaves, the subscriber is dropped or the API shuts down.
func (s *eventServer) WatchEvents(req *sipsvcv1.WatchEventsRequest, stream sipsvcv1.EventService_WatchEventsServer) error {
	f := EventFilter{DN: req.GetDn(), CallID: req.GetCallId()}
	if f.DN != "" {
		if err := checkNumber("dn", f.DN); err != nil {
			return err
		}
	}
	if len(f.CallID) > maxIDLen {
		return invalidField("call_id", "is longer than %d bytes", maxIDLen)
	}
	for i, k := range req.GetKinds() {
		kind, ok := s.enums.eventKind[k]
		if !ok {
			return invalidField("kinds", "kinds[%d]: %v is not an event kind", i, k)
		}
		f.Kinds = append(f.Kinds, kind)
	}
	sub := s.hub.subscribe(f)
	defer s.hub.unsubscribe(sub)
	// Send the response headers now, so that clients (and the REST gateway) see the stream
	// open before the first event.
	// The header marks the stream as open (validated): openStream only answers 200 then.
	if err := stream.SendHeader(metadata.Pairs(streamOpenHeader, "1")); err != nil {
		return err
	}
	ctx := stream.Context()
	for {
		select {
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case <-s.stopping:
			return status.Error(codes.Unavailable, "server shutting down")
		case ev, ok := <-sub.ch:
			if !ok {
				return status.Error(codes.Unavailable, "event subscriber too slow: dropped; reconnect")
			}
			if err := stream.Send(&sipsvcv1.WatchEventsResponse{Event: eventToProto(ev)}); err != nil {
				return err
			}
		}
	}
}
