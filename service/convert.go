package service

import (
	"fmt"
	"regexp"
	"strings"
	"time"

	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sipsvc/sipsvc/dn"
	sipsvcv1 "github.com/sipsvc/sipsvc/gen/sipsvc/v1"
	"github.com/sipsvc/sipsvc/signaling"
)

// Conversions between domain types and sipsvc.v1 messages. Enum tables are written both
// ways so that a value added on one side and forgotten on the other shows up in tests.

var callStates = map[signaling.CallState]sipsvcv1.CallState{
	signaling.StateInitiating: sipsvcv1.CallState_CALL_STATE_INITIATING,
	signaling.StateRinging:    sipsvcv1.CallState_CALL_STATE_RINGING,
	signaling.StateTalking:    sipsvcv1.CallState_CALL_STATE_TALKING,
	signaling.StateHeld:       sipsvcv1.CallState_CALL_STATE_HELD,
	signaling.StateReleased:   sipsvcv1.CallState_CALL_STATE_RELEASED,
}

var eventKinds = map[signaling.EventKind]sipsvcv1.EventKind{
	signaling.EventCallCreated:         sipsvcv1.EventKind_EVENT_KIND_CALL_CREATED,
	signaling.EventLegSchemeDecided:    sipsvcv1.EventKind_EVENT_KIND_LEG_SCHEME_DECIDED,
	signaling.EventHeaderRewritten:     sipsvcv1.EventKind_EVENT_KIND_HEADER_REWRITTEN,
	signaling.EventLegRinging:          sipsvcv1.EventKind_EVENT_KIND_LEG_RINGING,
	signaling.EventLegAnswered:         sipsvcv1.EventKind_EVENT_KIND_LEG_ANSWERED,
	signaling.EventLegHeld:             sipsvcv1.EventKind_EVENT_KIND_LEG_HELD,
	signaling.EventLegRetrieved:        sipsvcv1.EventKind_EVENT_KIND_LEG_RETRIEVED,
	signaling.EventLegTransferred:      sipsvcv1.EventKind_EVENT_KIND_LEG_TRANSFERRED,
	signaling.EventLegReleased:         sipsvcv1.EventKind_EVENT_KIND_LEG_RELEASED,
	signaling.EventCallEnded:           sipsvcv1.EventKind_EVENT_KIND_CALL_ENDED,
	signaling.EventRoutingFallback:     sipsvcv1.EventKind_EVENT_KIND_ROUTING_FALLBACK,
	signaling.EventRegistrationAdded:   sipsvcv1.EventKind_EVENT_KIND_REGISTRATION_ADDED,
	signaling.EventRegistrationRefresh: sipsvcv1.EventKind_EVENT_KIND_REGISTRATION_REFRESHED,
	signaling.EventRegistrationRemoved: sipsvcv1.EventKind_EVENT_KIND_REGISTRATION_REMOVED,
}

var dnTypes = map[dn.Type]sipsvcv1.DNType{
	dn.TypeExtension:   sipsvcv1.DNType_DN_TYPE_EXTENSION,
	dn.TypeACDPosition: sipsvcv1.DNType_DN_TYPE_ACD_POSITION,
	dn.TypeTrunk:       sipsvcv1.DNType_DN_TYPE_TRUNK,
	dn.TypeVoIPService: sipsvcv1.DNType_DN_TYPE_VOIP_SERVICE,
}

var dnPolicies = map[dn.Policy]sipsvcv1.SipsPolicy{
	dn.PolicyDefault: sipsvcv1.SipsPolicy_SIPS_POLICY_UNSPECIFIED,
	dn.PolicyPerLeg:  sipsvcv1.SipsPolicy_SIPS_POLICY_PER_LEG,
	dn.PolicyStrict:  sipsvcv1.SipsPolicy_SIPS_POLICY_STRICT,
}

var dnStyles = map[dn.Style]sipsvcv1.SecureStyle{
	dn.StyleDefault:         sipsvcv1.SecureStyle_SECURE_STYLE_UNSPECIFIED,
	dn.StyleSIPS:            sipsvcv1.SecureStyle_SECURE_STYLE_SIPS,
	dn.StyleSIPTransportTLS: sipsvcv1.SecureStyle_SECURE_STYLE_SIP_TRANSPORT_TLS,
	dn.StyleSIP:             sipsvcv1.SecureStyle_SECURE_STYLE_SIP,
}

// reverse inverts an enum table.
func reverse[K, V comparable](m map[K]V) map[V]K {
	r := make(map[V]K, len(m))
	for k, v := range m {
		r[v] = k
	}
	return r
}

// enumTables holds the reversed tables, built once per API (no package state beyond the
// constant tables above).
type enumTables struct {
	callState map[sipsvcv1.CallState]signaling.CallState
	eventKind map[sipsvcv1.EventKind]signaling.EventKind
	dnType    map[sipsvcv1.DNType]dn.Type
	dnPolicy  map[sipsvcv1.SipsPolicy]dn.Policy
	dnStyle   map[sipsvcv1.SecureStyle]dn.Style
}

func newEnumTables() *enumTables {
	return &enumTables{
		callState: reverse(callStates),
		eventKind: reverse(eventKinds),
		dnType:    reverse(dnTypes),
		dnPolicy:  reverse(dnPolicies),
		dnStyle:   reverse(dnStyles),
	}
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func legDecisionToProto(d signaling.LegDecision) *sipsvcv1.LegDecision {
	return &sipsvcv1.LegDecision{
		LegId:     d.Leg,
		Scheme:    d.Scheme,
		Transport: d.Transport,
		Secure:    d.Secure,
		Reason:    d.Reason,
		Rule:      d.Rule,
	}
}

func rewriteToProto(r signaling.Rewrite) *sipsvcv1.HeaderRewrite {
	return &sipsvcv1.HeaderRewrite{LegId: r.Leg, Header: r.Header, Before: r.Before, After: r.After, Rule: r.Rule}
}

func legDirection(s string) sipsvcv1.LegDirection {
	switch s {
	case "inbound":
		return sipsvcv1.LegDirection_LEG_DIRECTION_INBOUND
	case "outbound":
		return sipsvcv1.LegDirection_LEG_DIRECTION_OUTBOUND
	}
	return sipsvcv1.LegDirection_LEG_DIRECTION_UNSPECIFIED
}

func callToProto(c signaling.CallInfo) *sipsvcv1.Call {
	out := &sipsvcv1.Call{
		CallId:     c.ID,
		State:      callStates[c.State],
		Caller:     c.Caller,
		Dialed:     c.Dialed,
		CreateTime: timestamp(c.Created),
		AnswerTime: timestamp(c.Answered),
	}
	for _, l := range c.Legs {
		out.Legs = append(out.Legs, &sipsvcv1.Leg{
			LegId:     l.ID,
			Dn:        l.DN,
			Uri:       l.URI,
			SipCallId: l.SIPCallID,
			Direction: legDirection(l.Direction),
			State:     callStates[l.State],
			Decision:  legDecisionToProto(l.Decision),
			Peer:      l.Peer,
			Cause:     l.Cause,
		})
	}
	for _, r := range c.Rewrites {
		out.Rewrites = append(out.Rewrites, rewriteToProto(r))
	}
	return out
}

func bindingToProto(b dn.Binding) *sipsvcv1.Registration {
	return &sipsvcv1.Registration{
		Dn:         b.Number,
		Contact:    b.Contact,
		Secure:     b.Secure,
		Transport:  b.Transport,
		Source:     b.Source,
		InstanceId: b.InstanceID,
		SipCallId:  b.CallID,
		Cseq:       b.CSeq,
		UserAgent:  b.UserAgent,
		ExpireTime: timestamp(b.Expires),
		UpdateTime: timestamp(b.Updated),
	}
}

func eventToProto(ev signaling.Event) *sipsvcv1.Event {
	out := &sipsvcv1.Event{
		Kind:      eventKinds[ev.Kind],
		Time:      timestamp(ev.Time),
		CallId:    ev.CallID,
		LegId:     ev.Leg,
		Dn:        ev.DN,
		SipCallId: ev.SIPCallID,
		SipStatus: int32(ev.Status),
		Cause:     ev.Cause,
	}
	switch {
	case ev.Decision != nil:
		out.Detail = &sipsvcv1.Event_LegDecision{LegDecision: legDecisionToProto(*ev.Decision)}
	case ev.Rewrite != nil:
		out.Detail = &sipsvcv1.Event_HeaderRewrite{HeaderRewrite: rewriteToProto(*ev.Rewrite)}
	case ev.Binding != nil:
		out.Detail = &sipsvcv1.Event_Registration{Registration: bindingToProto(*ev.Binding)}
		if out.Dn == "" {
			out.Dn = ev.Binding.Number
		}
	}
	return out
}

// dnToProto never copies the HA1 hashes: has_password says whether there are any.
func dnToProto(d dn.DN) *sipsvcv1.DN {
	return &sipsvcv1.DN{
		Number:              d.Number,
		Type:                dnTypes[d.Type],
		Contact:             d.Contact,
		DisplayName:         d.DisplayName,
		Policy:              dnPolicies[d.Policy],
		Style:               dnStyles[d.Style],
		InsecureSkipVerify:  d.InsecureSkipVerify,
		Disabled:            d.Disabled,
		HasPassword:         d.HasPassword(),
		TrustedSources:      append([]string(nil), d.TrustedSources...),
		TrustedCertSubjects: append([]string(nil), d.TrustedCertSubjects...),
		Traceparent:         d.Traceparent,
		AllowAnonymous:      d.AllowAnonymous,
	}
}

// dnFromProto converts every field but the password and the hashes. Unknown enum numbers
// are reported as a *dn.FieldError.
func (t *enumTables) dnFromProto(p *sipsvcv1.DN) (dn.DN, error) {
	d := dn.DN{
		Number:              p.GetNumber(),
		Contact:             p.GetContact(),
		DisplayName:         p.GetDisplayName(),
		InsecureSkipVerify:  p.GetInsecureSkipVerify(),
		Disabled:            p.GetDisabled(),
		TrustedSources:      p.GetTrustedSources(),
		TrustedCertSubjects: p.GetTrustedCertSubjects(),
		Traceparent:         p.GetTraceparent(),
		AllowAnonymous:      p.GetAllowAnonymous(),
	}
	var ok bool
	if p.GetType() != sipsvcv1.DNType_DN_TYPE_UNSPECIFIED {
		if d.Type, ok = t.dnType[p.GetType()]; !ok {
			return d, &dn.FieldError{Field: "type", Msg: fmt.Sprintf("unknown value %d", p.GetType())}
		}
	}
	if d.Policy, ok = t.dnPolicy[p.GetPolicy()]; !ok {
		return d, &dn.FieldError{Field: "policy", Msg: fmt.Sprintf("unknown value %d", p.GetPolicy())}
	}
	if d.Style, ok = t.dnStyle[p.GetStyle()]; !ok {
		return d, &dn.FieldError{Field: "style", Msg: fmt.Sprintf("unknown value %d", p.GetStyle())}
	}
	return d, nil
}

// enumNames lists the JSON names of an enum's values, without the _UNSPECIFIED zero value:
// what a REST client may send.
func enumNames(e protoreflect.EnumDescriptor) string {
	vs := e.Values()
	var out []string
	for i := range vs.Len() {
		if n := string(vs.Get(i).Name()); !strings.HasSuffix(n, "_UNSPECIFIED") {
			out = append(out, n)
		}
	}
	return strings.Join(out, ", ")
}

// jsonEnumFields maps the enum fields a REST body may carry to their enums, to name the
// accepted values when a value is refused.
var jsonEnumFields = map[string]protoreflect.EnumDescriptor{
	"type":   sipsvcv1.DNType(0).Descriptor(),
	"policy": sipsvcv1.SipsPolicy(0).Descriptor(),
	"style":  sipsvcv1.SecureStyle(0).Descriptor(),
	"kinds":  sipsvcv1.EventKind(0).Descriptor(),
}

// badEnumRE matches protojson's error for an unknown enum name.
var badEnumRE = regexp.MustCompile(`invalid value for enum field (\w+): ("[^"]*")`)

// explainEnum rewrites protojson's "invalid value for enum field type: \"extension\"" into a
// message that lists the accepted values; other messages are returned unchanged.
func explainEnum(msg string) string {
	m := badEnumRE.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	e, ok := jsonEnumFields[m[1]]
	if !ok {
		return msg
	}
	return fmt.Sprintf("%s: %s is not a value of %s: use one of %s", m[1], m[2], e.Name(), enumNames(e))
}
