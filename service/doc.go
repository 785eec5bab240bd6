// Package service is sipsvc's control plane: it adapts gRPC (and, through grpc-gateway,
// REST/JSON) to the domain packages, and calls the external routing service.
//
// The pieces:
//
//   - API serves CallService, EventService and DirectoryService over gRPC (with health,
//     reflection and bearer-token auth) and the same RPCs as REST/JSON on an HTTP port,
//     plus /openapi.json, /healthz, /readyz and optionally /metrics.
//     Readiness has one source (APIConfig.Ready, the Calls component when it implements
//     Readiness, and "not shutting down"): /readyz reads it per request, and a watcher
//     bound to the API's lifetime keeps the grpc.health.v1 status of "" and of every
//     service equal to it (NOT_SERVING before the B2BUA serves and while it drains).
//   - Hub is a signaling.Observer that fans events out to WatchEvents subscribers.
//   - RoutingClient is a signaling.Router (and Observer) backed by a routing.v1 service.
//
// Domain errors become gRPC codes only here, through one table (see Status). The domain
// packages never import gRPC: service declares what it needs from them as interfaces
// (CallControl, Registrations, Readiness) and store.Store.
package service
